"""Figure 3: a fresh process serving its function's first event, against a fresh boto3 process.

Both kinds of process talk to one moto server on loopback, reset and seeded the same way before
every run, so each first event finds the data its events/ file names.
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
from typing import Any

from benchmarks.harness import BUCKET, ENVIRONMENT, FUNCTIONS, ROOT, TABLE, Figure
from tests.support.table import load_yaml

# Runs in the fresh process: what Lambda's runtime does before and for the first event.
HANDLER_SCRIPT = """
import json, os, sys
from {module} import lambda_handler
class Context:
    function_name = "{name}"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:{name}"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    def get_remaining_time_in_millis(self):
        return 300000
with open(sys.argv[1], encoding="utf-8") as file:
    event = json.load(file)
response = lambda_handler(event, Context())
status = response.get("statusCode") if isinstance(response, dict) else None
sys.stderr.write(json.dumps({{"status": status}}))
sys.stderr.flush()
os._exit(0)  # Lambda keeps the process after the first event: tearing it down is no part of a cold start
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


def functions_in_template() -> list[tuple[str, str, bool]]:
    """(logical id, handler module, whether its policies allow S3) of every function, in template order."""
    resources = load_yaml(ROOT / "template.yaml")["Resources"]
    found = []
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::Serverless::Function":
            handler = resource["Properties"]["Handler"]
            uses_s3 = "s3:" in json.dumps(resource["Properties"].get("Policies", []))
            found.append((logical_id, handler.rsplit(".", 1)[0], uses_s3))
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

        from tests.support.table import create_table

        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()
        dynamodb = boto3.client("dynamodb", endpoint_url=self.url)
        create_table(dynamodb, TABLE)
        boto3.client("s3", endpoint_url=self.url).create_bucket(Bucket=BUCKET)
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


def measure(repeats: int, only: list[str] | None = None) -> tuple[list[Figure], dict[str, float]]:
    functions = [found for found in functions_in_template() if only is None or found[0] in only]
    items = seed_items()
    figures, durations = [], {}
    with SeededServer(items) as server, tempfile.TemporaryDirectory() as builds:
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
        for name, module, uses_s3 in functions:
            event_file = ROOT / "events" / f"{module.split('.')[-1]}.json"
            if not event_file.exists():
                continue
            script = HANDLER_SCRIPT.format(module=module, name=name)
            built = {**environment, "PYTHONPATH": str(build_function(name, Path(builds)))}
            leave_out = LEAVE_OUT.get(module.split(".")[-1], set())
            mine, base, ratios, s3_ratios, status = [], [], [], [], ""
            warm_ups = 1 if repeats > 1 else 0  # a first pair that only warms the file cache
            for attempt in range(repeats + warm_ups):
                server.reset(leave_out)
                seconds, written = run_fresh(script, built, str(event_file))
                floor_seconds, _ = run_fresh(floor_script, environment)
                s3_floor_seconds = run_fresh(s3_floor_script, environment)[0] if uses_s3 else 0.0
                status = _status(written)
                if attempt >= warm_ups:
                    mine.append(seconds)
                    base.append(floor_seconds)
                    ratios.append(seconds / floor_seconds)
                    if uses_s3:
                        s3_ratios.append((seconds, s3_floor_seconds))
            # Each pair runs back to back, so its ratio cancels what the machine was doing at the time;
            # the figure's ratio is the median of those, its value and floor the medians of each side.
            value, floor = statistics.median(mine), statistics.median(base)
            durations[name] = value * 1e3
            figures.append(
                Figure(
                    f"cold_start_ratio.{name}",
                    value * 1e3,
                    "ms",
                    floor * 1e3,
                    "<= 1.3",
                    f"{module}, first event answered {status}, median of {repeats} pairs",
                    paired_ratio=statistics.median(ratios),
                )
            )
            if s3_ratios:
                figures.append(
                    Figure(
                        f"cold_start_ratio.{name}.s3_floor",
                        value * 1e3,
                        "ms",
                        statistics.median(floor for _, floor in s3_ratios) * 1e3,
                        "reported",
                        "the same runs against a floor that also makes the S3 client and one S3 call",
                        paired_ratio=statistics.median(taken / floor for taken, floor in s3_ratios),
                    )
                )
    return figures, durations


def _status(stderr: str) -> str:
    try:
        return str(json.loads(stderr.strip().splitlines()[-1])["status"])
    except (ValueError, IndexError, KeyError):
        return "?"
