"""Figure 3: a function's cold start, against a fresh boto3 process making its client and one call.

Two cold starts, each with tracing as deployed (`Tracing: Active`: the X-Ray SDK records every call
and sends it to a daemon, here a UDP socket that only listens):
- init, as with SnapStart off: a fresh process imports the handler and serves its events/ event;
- the restore path, for the functions template.yaml gives SnapStart: a process runs the init and the
  before-snapshot hooks, then forks; the child, resuming from that memory as an instance restored from
  the snapshot does, runs the after-restore hooks and serves the event. Timed from the fork to the
  answer.

All processes talk to one moto server on loopback, reset and seeded the same way before every run,
so each first event finds the data its events/ file names.
"""

import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.harness import BUCKET, ENVIRONMENT, FUNCTIONS, ROOT, TABLE, Figure
from tests.support.table import load_yaml

# Runs in the fresh process: what Lambda's runtime does before and for the first event.
CONTEXT = """
class Context:
    function_name = "{name}"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:{name}"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    def get_remaining_time_in_millis(self):
        return 300000
"""
HANDLER_SCRIPT = """
import json, os, sys
from {module} import lambda_handler
{context}
with open(sys.argv[1], encoding="utf-8") as file:
    event = json.load(file)
response = lambda_handler(event, Context())
status = response.get("statusCode") if isinstance(response, dict) else None
sys.stderr.write(json.dumps({{"status": status}}))
sys.stderr.flush()
os._exit(0)  # Lambda keeps the process after the first event: tearing it down is no part of a cold start
"""
# SnapStart, as Lambda's Python runtime runs its hooks (snapshot_restore_py's registries): before the
# snapshot in reverse order of registration, after the restore in order. The fork stands for the
# restore: a new process resuming from the memory the hooks left.
RESTORE_SCRIPT = """
import json, os, sys, time
from {module} import lambda_handler
from snapshot_restore_py import get_after_restore, get_before_snapshot
{context}
before = get_before_snapshot()
while before:
    hook, args, kwargs = before.pop()
    hook(*args, **kwargs)
with open(sys.argv[1], encoding="utf-8") as file:
    event = json.load(file)
resumed = time.perf_counter()
if os.fork() == 0:
    running = time.perf_counter()
    for hook, args, kwargs in get_after_restore():
        hook(*args, **kwargs)
    hooks_done = time.perf_counter()
    response = lambda_handler(event, Context())
    answered = time.perf_counter()
    status = response.get("statusCode") if isinstance(response, dict) else None
    timing = {{"seconds": answered - resumed, "fork": running - resumed, "hooks": hooks_done - running}}
    sys.stderr.write(json.dumps({{"status": status, **timing}}))
    sys.stderr.flush()
    os._exit(0)
os.wait()
os._exit(0)
"""
FLOOR_SCRIPT = """
import os
import boto3
key = {{"pk": {{"S": "USER#1000"}}, "sk": {{"S": "SEG#X"}}}}
boto3.client("dynamodb").get_item(TableName="{table}", Key=key)
os._exit(0)  # as the handler's process does: the first answer is where a cold start ends
"""
# The report functions need S3 as well: the same floor with the S3 client they cannot do without.
S3_FLOOR_SCRIPT = """
import os
import boto3
key = {{"pk": {{"S": "USER#1000"}}, "sk": {{"S": "SEG#X"}}}}
boto3.client("dynamodb").get_item(TableName="{table}", Key=key)
boto3.client("s3").list_objects_v2(Bucket="{bucket}", MaxKeys=1)
os._exit(0)
"""
# An event that creates what the seed already holds would only show the conflict path.
LEAVE_OUT = {"api_create_segment": {("SEGMENT#AVITO_VOICE_MESSAGES", "META")}}


class Function(NamedTuple):
    name: str  # logical id
    module: str  # handlers.<module>
    uses_s3: bool  # its policies allow S3
    snapstart: bool  # template.yaml gives it SnapStart


def functions_in_template() -> list[Function]:
    """Every function of template.yaml, in template order."""
    resources = load_yaml(ROOT / "template.yaml")["Resources"]
    found = []
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::Serverless::Function":
            properties = resource["Properties"]
            module = properties["Handler"].rsplit(".", 1)[0]
            uses_s3 = "s3:" in json.dumps(properties.get("Policies", []))
            found.append(Function(logical_id, module, uses_s3, "SnapStart" in properties))
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SeededServer:
    """A moto server holding the table, the bucket and a fixed set of items, reset before each run."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.items = items

    def __enter__(self) -> "SeededServer":
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
        self.server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.stop()

    def reset(self, leave_out: set[tuple[str, str]]) -> None:
        import boto3

        from tests.support.background import create_queues
        from tests.support.table import create_table

        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()
        dynamodb = boto3.client("dynamodb", endpoint_url=self.url)
        create_table(dynamodb, TABLE)
        boto3.client("s3", endpoint_url=self.url).create_bucket(Bucket=BUCKET)
        # the stream function sends jobs; the import functions sign links to the imports bucket
        create_queues(
            boto3.client("sqs", endpoint_url=self.url), TABLE, boto3.client("s3", endpoint_url=self.url)
        )
        for item in self.items:
            if (item["pk"]["S"], item["sk"]["S"]) not in leave_out:
                dynamodb.put_item(TableName=TABLE, Item=item)


def seed_items() -> list[dict[str, Any]]:
    """The SPEC's example data, made through the handlers on in-process moto, as raw items."""
    import boto3

    from benchmarks.harness import moto_aws
    from tests.support.api import Api

    with moto_aws():
        api = Api()
        for slug in [
            "AVITO_VOICE_MESSAGES",
            "AVITO_PERFORMANCE_VAS",
            "AVITO_DISCOUNT_30",
            "AVITO_DISCOUNT_50",
        ]:
            assert api.create_segment(slug).status == 201
        assert api.change_user(1000, add=["AVITO_VOICE_MESSAGES", "AVITO_PERFORMANCE_VAS"]).status == 200
        return list(boto3.client("dynamodb").scan(TableName=TABLE)["Items"])


def build_function(name: str, into: Path) -> Path:
    """The function's package as `sam build` makes it (functions/Makefile): its code, compiled.

    Its dependencies are this venv's, compiled by pip at install, as the layer ships them.
    """
    artifacts = into / name
    subprocess.run(
        [
            "make",
            "--silent",
            "-C",
            str(FUNCTIONS),
            f"build-{name}",
            f"ARTIFACTS_DIR={artifacts}",
            f"PYTHON={sys.executable}",
        ],
        check=True,
    )
    return artifacts


def run_fresh(script: str, environment: dict[str, str], *arguments: str) -> tuple[float, str]:
    """Seconds from spawning the process to its exit, and what it wrote to stderr."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script, *arguments],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"fresh process failed: {done.stderr[-2000:]}")
    return seconds, done.stderr


def traced_as_deployed(environment: dict[str, str], name: str, task_root: str, daemon: str) -> dict[str, str]:
    """What Lambda gives a function with `Tracing: Active`: no POWERTOOLS_TRACE_DISABLED, Lambda's task
    root (powertools and the X-Ray SDK look for it), a sampled trace header and the daemon's address."""
    traced = {key: value for key, value in environment.items() if key != "POWERTOOLS_TRACE_DISABLED"}
    return traced | {
        "LAMBDA_TASK_ROOT": task_root,
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "_X_AMZN_TRACE_ID": "Root=1-65f0c0de-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1",
        "AWS_XRAY_DAEMON_ADDRESS": daemon,
    }


class Pairs:
    """One figure's pairs: the measured side and its floor, run back to back."""

    def __init__(self) -> None:
        self.mine: list[float] = []
        self.floors: list[float] = []

    def add(self, mine: float, floor: float) -> None:
        self.mine.append(mine)
        self.floors.append(floor)

    def figure(self, name: str, target: str, note: str) -> Figure:
        # Each pair runs back to back, so its ratio cancels what the machine was doing at the time;
        # the figure's ratio is the median of those, its value and floor the medians of each side.
        return Figure(
            name,
            statistics.median(self.mine) * 1e3,
            "ms",
            statistics.median(self.floors) * 1e3,
            target,
            note,
            paired_ratio=statistics.median(m / f for m, f in zip(self.mine, self.floors, strict=True)),
        )


def measure(repeats: int, only: list[str] | None = None) -> tuple[list[Figure], dict[str, float]]:
    functions = [found for found in functions_in_template() if only is None or found.name in only]
    items = seed_items()
    figures, durations = [], {}
    with (
        SeededServer(items) as server,
        tempfile.TemporaryDirectory() as builds,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as daemon,
    ):
        daemon.bind(("127.0.0.1", 0))
        daemon_address = f"127.0.0.1:{daemon.getsockname()[1]}"
        environment = {
            **{
                key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "POWERTOOLS_"))
            },
            **ENVIRONMENT,
            "AWS_ENDPOINT_URL": server.url,
            "PYTHONPATH": str(FUNCTIONS),
        }
        floor_script = FLOOR_SCRIPT.format(table=TABLE)
        s3_floor_script = S3_FLOOR_SCRIPT.format(table=TABLE, bucket=BUCKET)
        for function in functions:
            event_file = ROOT / "events" / f"{function.module.split('.')[-1]}.json"
            if not event_file.exists():
                continue
            event_file = this_months_report(event_file, Path(builds))
            context = CONTEXT.format(name=function.name)
            script = HANDLER_SCRIPT.format(module=function.module, context=context)
            restore_script = RESTORE_SCRIPT.format(module=function.module, context=context)
            built = build_function(function.name, Path(builds))
            traced = traced_as_deployed(environment, function.name, str(built), daemon_address)
            traced["PYTHONPATH"] = str(built)
            leave_out = LEAVE_OUT.get(function.module.split(".")[-1], set())
            init, s3_init, restore = Pairs(), Pairs(), Pairs()
            hooks: list[float] = []
            forks: list[float] = []
            status = restored_status = ""
            warm_ups = 1 if repeats > 1 else 0  # a first pair that only warms the file cache
            for attempt in range(repeats + warm_ups):
                server.reset(leave_out)
                seconds, written = run_fresh(script, traced, str(event_file))
                floor_seconds, _ = run_fresh(floor_script, environment)
                s3_floor_seconds = run_fresh(s3_floor_script, environment)[0] if function.uses_s3 else 0.0
                status = _answer(written).get("status", "?")
                if function.snapstart:
                    server.reset(leave_out)
                    answer = _answer(run_fresh(restore_script, traced, str(event_file))[1])
                    if "seconds" not in answer:
                        raise RuntimeError(f"the restored instance of {function.name} did not answer")
                    restored_status = answer.get("status", "?")
                if attempt < warm_ups:
                    continue
                init.add(seconds, floor_seconds)
                if function.uses_s3:
                    s3_init.add(seconds, s3_floor_seconds)
                if function.snapstart:  # a function that needs S3 cannot do without its client either
                    restore.add(answer["seconds"], s3_floor_seconds if function.uses_s3 else floor_seconds)
                    hooks.append(answer["hooks"])
                    forks.append(answer["fork"])
            durations[function.name] = statistics.median(init.mine) * 1e3
            note = f"{function.module}, first event answered {status}, median of {repeats} pairs"
            figures.append(
                init.figure(f"cold_start_ratio.{function.name}", "reported", f"init, SnapStart off: {note}")
            )
            if function.uses_s3:
                figures.append(
                    s3_init.figure(
                        f"cold_start_ratio.{function.name}.s3_floor",
                        "reported",
                        "the same inits against a floor that also makes the S3 client and one S3 call",
                    )
                )
            if function.snapstart:
                hooks_ms, fork_ms = statistics.median(hooks) * 1e3, statistics.median(forks) * 1e3
                figures.append(
                    restore.figure(
                        f"cold_start_ratio.{function.name}.restore",
                        "<= 1.3",
                        f"SnapStart: fork {fork_ms:.1f} ms, after-restore hooks {hooks_ms:.3f} ms, then the "
                        f"first event, answered {restored_status}; floor: "
                        + (
                            "the S3 floor (its client and one S3 call too)"
                            if function.uses_s3
                            else "the same"
                        ),
                    )
                )
    return figures, durations


def this_months_report(event_file: Path, into: Path) -> Path:
    """The history report's events/ file asks for the SPEC's example period, 2023-08: a report that
    old reads the rule log of every month since (one Query a month, 40 and more), which is the
    report's work, not its cold start. Its first event here asks for this month, as most do."""
    event = json.loads(event_file.read_text(encoding="utf-8"))
    query = event.get("queryStringParameters") or {}
    if "period" not in query:
        return event_file
    month = time.strftime("%Y-%m", time.gmtime())
    event["rawQueryString"] = event.get("rawQueryString", "").replace(query["period"], month)
    query["period"] = month
    moved = into / event_file.name
    moved.write_text(json.dumps(event), encoding="utf-8")
    return moved


def _answer(stderr: str) -> dict[str, Any]:
    try:
        return dict(json.loads(stderr.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return {}
