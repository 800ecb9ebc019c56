"""What every benchmark shares: the environment moto needs, a figure, timing helpers and seeding."""

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.environment import moto_environment

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
if str(FUNCTIONS) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS))

TABLE = "segments-bench"
BUCKET = "segments-reports-bench"

# The variables the tests use (tests/support/environment.py); the catalog cache is on, as deployed.
ENVIRONMENT = moto_environment(TABLE, BUCKET, catalog_cache_seconds=30) | {"POWERTOOLS_LOG_LEVEL": "WARNING"}
os.environ.update(ENVIRONMENT)


@dataclass(frozen=True)
class Figure:
    """One line of the table: a measured value against a floor measured side by side."""

    name: str
    value: float
    unit: str
    floor: float | None
    target: str = ""
    note: str = ""
    paired_ratio: float | None = None  # the median of per-pair ratios, where pairs were measured

    @property
    def ratio(self) -> float | None:
        if self.paired_ratio is not None:
            return self.paired_ratio
        if self.floor is None or self.floor == 0:
            return None
        return self.value / self.floor

    def as_json(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "value": round(self.value, 6),
            "unit": self.unit,
            "floor": None if self.floor is None else round(self.floor, 6),
            "ratio": None if ratio is None else round(ratio, 4),
        }


def elapsed(action: Callable[[], object]) -> float:
    """Seconds one call takes."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def paired_medians(
    measured: Callable[[], object], floor: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median seconds of each, alternating calls so drift on the machine touches both alike."""
    mine, base = [], []
    for _ in range(repeats):
        mine.append(elapsed(measured))
        base.append(elapsed(floor))
    return statistics.median(mine), statistics.median(base)


@contextmanager
def moto_aws() -> Iterator[None]:
    """moto's in-process AWS with the table from template.yaml and the reports bucket, caches emptied."""
    import boto3
    from moto import mock_aws

    from dal import factory
    from shared import settings
    from tests.support.atomic_moto import make_dynamodb_requests_atomic
    from tests.support.background import create_queues
    from tests.support.table import create_table

    make_dynamodb_requests_atomic()
    os.environ.pop("AWS_ENDPOINT_URL", None)
    with mock_aws():
        create_table(boto3.client("dynamodb"), TABLE)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        create_queues(boto3.client("sqs"), TABLE)
        settings.get_settings.cache_clear()
        factory.get_catalog.cache_clear()
        factory.get_job_queue.cache_clear()
        yield
        factory.get_catalog.cache_clear()


@contextmanager
def replayed_reads(operations: tuple[str, ...] = ("Query",)) -> Iterator[None]:
    """moto answers each distinct read request once; repeats get the same bytes back at once.

    moto spends milliseconds serialising items that DynamoDB would send in a fraction of that,
    so a floor on moto hides the handler's own cost. Replaying keeps both sides on identical
    responses while taking the backend's time out of both.
    """
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.process_request
    answers: dict[tuple[str, str, bytes], Any] = {}
    targets = {f"DynamoDB_20120810.{operation}" for operation in operations}

    def process_request(self: BotocoreStubber, request: Any) -> Any:
        if request.headers.get("X-Amz-Target", b"").decode() not in targets:
            return original(self, request)
        body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
        key = (request.method, request.url, body)
        if key not in answers:
            answers[key] = original(self, request)
        return answers[key]

    BotocoreStubber.process_request = process_request  # type: ignore[method-assign]
    try:
        yield
    finally:
        BotocoreStubber.process_request = original  # type: ignore[method-assign]
