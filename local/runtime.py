"""`make run`: the whole service on one machine, served the way API Gateway and Lambda would.

python -m local.runtime --port 3000 [--aws-port 3001] [--data-dir .local-data]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from local import snapshots
from local.admin import Admin
from local.embedded_aws import EmbeddedAws
from local.gateway import Gateway, serve
from local.http_events import Route, RouteTable
from local.lambda_host import LambdaHost
from local.schedules import run_schedules
from local.streams import EventSourceMapping, current_positions, run_mapping
from local.template import Stack, TemplateError, load_stack
from local.ttl import TtlMarks, TtlSweeper, run_sweeper

log = logging.getLogger("local.runtime")

REPO_ROOT = Path(__file__).resolve().parent.parent
# Deployed values that make no sense on one machine; the SPEC wants the catalog cache off locally.
LOCAL_OVERRIDES = {"CATALOG_CACHE_SECONDS": "0", "POWERTOOLS_TRACE_DISABLED": "true"}
SNAPSHOT_INTERVAL_S = 5.0


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m local.runtime", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=env("LOCAL_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("LOCAL_PORT", "3000")))
    parser.add_argument(
        "--aws-port",
        type=int,
        default=int(env("LOCAL_AWS_PORT", "0")),
        help="port of the embedded AWS endpoint (default: --port + 1)",
    )
    parser.add_argument("--data-dir", type=Path, default=Path(env("LOCAL_DATA_DIR", ".local-data")))
    parser.add_argument(
        "--no-persist",
        action="store_true",
        default=env("LOCAL_NO_PERSIST") == "1",
        help="start empty and save nothing",
    )
    parser.add_argument(
        "--template", type=Path, default=Path(env("LOCAL_TEMPLATE", REPO_ROOT / "template.yaml"))
    )
    arguments = parser.parse_args(argv)
    if not arguments.aws_port:
        arguments.aws_port = arguments.port + 1
    return arguments


def handler_environment(stack: Stack) -> dict[str, str]:
    """One process hosts every function, so they must agree on each variable's value."""
    merged: dict[str, str] = {}
    for function in stack.functions:
        for name, value in function.environment.items():
            if name in merged and merged[name] != value and name not in LOCAL_OVERRIDES:
                raise TemplateError(
                    f"{function.name} sets {name}={value!r} but another function sets {merged[name]!r}; "
                    "the in-process runtime needs one value per variable"
                )
            merged[name] = value
    return {**merged, **LOCAL_OVERRIDES}


class Runtime:
    def __init__(self, arguments: argparse.Namespace) -> None:
        self.arguments = arguments
        self.stop = threading.Event()
        self.aws = EmbeddedAws(arguments.aws_port)
        self.stack = load_stack(arguments.template, self.aws.endpoint_url)
        self.threads: list[threading.Thread] = []
        self.persist = not arguments.no_persist

    def start(self) -> None:
        started = time.perf_counter()
        os.environ.update(handler_environment(self.stack))
        self.aws.start()
        stream_arn = self.aws.create_resources(self.stack)
        table = self.stack.table
        if self.persist:
            restored = snapshots.restore(
                self.arguments.data_dir,
                self.aws.client("dynamodb"),
                table.name,
                self.aws.client("s3"),
                list(self.stack.buckets.values()),
            )
            if restored:
                log.info("restored %d item(s) from %s", restored, self.arguments.data_dir)
        host = LambdaHost(self.stack.functions)
        routes = RouteTable([Route(f.name, route) for f in self.stack.functions for route in f.routes])
        self.server = serve(
            Gateway(routes, host, Admin(self.stack, host)), self.arguments.host, self.arguments.port
        )
        self._spawn("gateway", self.server.serve_forever)
        marks = TtlMarks()
        self._start_mappings(host, stream_arn, marks, current_positions(table.name))
        if table.ttl_attribute:
            key_names = [key["AttributeName"] for key in table.properties["KeySchema"]]
            sweeper = TtlSweeper(
                self.aws.client("dynamodb"), table.name, table.ttl_attribute, key_names, marks
            )
            self._spawn("ttl", run_sweeper, sweeper, self.stop)
        self._spawn("schedules", run_schedules, self.stack.functions, host, self.stop)
        if self.persist:
            self._spawn("snapshots", self._save_periodically)
        self._spawn("warm-up", self._warm_up, host)
        self._banner(time.perf_counter() - started)

    def _start_mappings(
        self, host: LambdaHost, stream_arn: str, marks: TtlMarks, positions: dict[str, str]
    ) -> None:
        streams, sqs = self.aws.client("dynamodbstreams"), self.aws.client("sqs")
        for function in self.stack.functions:
            for source in function.streams:
                queue_url = None
                if source.on_failure_queue is not None:
                    queue_url = sqs.get_queue_url(QueueName=self.stack.queues[source.on_failure_queue])[
                        "QueueUrl"
                    ]
                # Records written before this start (a restored snapshot) are not new changes.
                mapping = EventSourceMapping(
                    function.name, source, stream_arn, streams, host, sqs, queue_url, marks, positions
                )
                self._spawn(f"stream-{function.name}", run_mapping, mapping, self.stop)

    def _warm_up(self, host: LambdaHost) -> None:
        """Imports handlers in the background, so the first requests do not pay every cold start."""
        for function in self.stack.functions:
            if self.stop.is_set():
                return
            host.warm(function.name)

    def _save_periodically(self) -> None:
        last: object = None
        while not self.stop.wait(SNAPSHOT_INTERVAL_S):
            try:
                state = (current_positions(self.stack.table.name), self._object_keys())
                if state != last:
                    self._save()
                    last = state
            except Exception:
                log.exception("snapshot failed")

    def _object_keys(self) -> list[str]:
        s3 = self.aws.client("s3")
        return [
            f"{bucket}/{entry['Key']}"
            for bucket in self.stack.buckets.values()
            for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        ]

    def _save(self) -> None:
        snapshots.save(
            self.arguments.data_dir,
            self.aws.client("dynamodb"),
            self.stack.table.name,
            self.aws.client("s3"),
            list(self.stack.buckets.values()),
        )

    def _spawn(self, name: str, target: Callable[..., object], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _banner(self, seconds: float) -> None:
        url = f"http://{self.arguments.host}:{self.arguments.port}"
        data = self.arguments.data_dir if self.persist else "nothing (--no-persist)"
        lines = [
            f"segments local runtime ready in {seconds:.1f} s: {url}",
            f"  {len(self.stack.functions)} functions from {self.arguments.template}",
            f"  embedded AWS (moto): {self.aws.endpoint_url}   data saved to: {data}",
            "  NOTE: IAM auth is NOT checked locally; deployed, every request must be SigV4-signed.",
            "  Ctrl-C to stop.",
        ]
        print("\n".join(lines), flush=True)

    def shutdown(self) -> None:
        self.stop.set()
        self.server.shutdown()
        for thread in self.threads:
            thread.join(timeout=5)
        if self.persist:
            self._save()
            log.info("saved data to %s", self.arguments.data_dir)
        self.aws.stop()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
    logging.getLogger("botocore").setLevel(logging.WARNING)
    arguments = parse_arguments(argv)
    try:
        runtime = Runtime(arguments)
        runtime.start()
    except (TemplateError, OSError) as error:
        print(f"local runtime cannot start: {error}", file=sys.stderr)
        return 2

    def request_stop(signum: int, frame: FrameType | None) -> None:
        runtime.stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    while not runtime.stop.wait(0.5):  # a timed wait keeps the main thread responsive to signals
        pass
    print("stopping...", flush=True)
    runtime.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
