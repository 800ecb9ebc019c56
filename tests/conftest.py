"""Every test runs against moto's in-process AWS, with the table built from template.yaml."""

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import pytest

from tests.support.environment import moto_environment
from tests.support.service_events import service_client  # before any botocore session: its hooks
from tests.support.xdist_groups import GroupScheduling

if TYPE_CHECKING:
    from tests.support.lagging_index import LaggingIndexes

TABLE = "segments-test"
BUCKET = "segments-reports-test"

os.environ.update(
    moto_environment(TABLE, BUCKET, catalog_cache_seconds=0)
    | {"POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_DEV": "false"}
)
os.environ.pop("AWS_ENDPOINT_URL", None)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> GroupScheduling | None:
    """`--dist loadgroup` (make test) by the groups of tests/support/xdist_groups.py."""
    return GroupScheduling(config, log) if config.getoption("dist") == "loadgroup" else None


# Global secondary indexes lag the table on DynamoDB; every test runs with them lagging this long
# (tests/support/lagging_index.py), so nothing the service decides can depend on an index being current.
INDEX_LAG_SECONDS = float(os.environ.get("SEGMENTS_INDEX_LAG_SECONDS", "2"))


@pytest.fixture
def aws() -> Iterator[None]:
    """moto's AWS with the service's table and bucket, every per-container cache emptied, and the
    table's indexes lagging it by INDEX_LAG_SECONDS."""
    import boto3
    from moto import mock_aws

    from tests.support.atomic_moto import make_dynamodb_requests_atomic
    from tests.support.background import create_queues
    from tests.support.lagging_index import LaggingIndexes
    from tests.support.table import create_table
    from tests.support.token_idempotency import CommittedTokens

    make_dynamodb_requests_atomic()
    with mock_aws():
        create_table(boto3.client("dynamodb"), TABLE)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        create_queues(boto3.client("sqs"), TABLE)
        forget_containers()
        client = service_client()
        lagging = LaggingIndexes(TABLE, INDEX_LAG_SECONDS).install(client)
        tokens = CommittedTokens().install(client)
        INDEXES.append(lagging)
        yield
        INDEXES.remove(lagging)
        tokens.uninstall(client)
        lagging.uninstall(client)
        forget_containers()


INDEXES: list["LaggingIndexes"] = []


def indexes_caught_up() -> None:
    """Wait out the index lag (instantly): what a client sees once the indexes have caught up."""
    for lagging in INDEXES:
        lagging.catch_up()


@contextmanager
def indexes_held() -> Iterator[None]:
    """The indexes stay behind every write made inside, however slowly a busy machine runs the test:
    what a client sees within the lag."""
    with ExitStack() as stack:
        for lagging in INDEXES:
            stack.enter_context(lagging.held())
        yield


def forget_containers() -> None:
    """A new test (or a new table) sees a fresh catalog, and no deletion the stream's reader knew of
    another table; clients are kept, as moto intercepts them in every test."""
    from dal import factory

    factory.get_catalog.cache_clear()
    factory.get_job_queue.cache_clear()
    stream_table = sys.modules.get("handlers.stream_table")
    if stream_table is not None:  # the deletions it knew were another test's
        stream_table.deletion_time.forget()
    factory.get_fan_out.cache_clear()
