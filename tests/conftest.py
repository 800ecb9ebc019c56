"""Every test runs against moto's in-process AWS, with the table built from template.yaml."""

import os
from collections.abc import Iterator

import pytest

from tests.support.environment import moto_environment
from tests.support.xdist_groups import GroupScheduling

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


@pytest.fixture
def aws() -> Iterator[None]:
    """moto's AWS with the service's table and bucket, and every per-container cache emptied."""
    import boto3
    from moto import mock_aws

    from dal import entities, factory
    from shared import settings
    from tests.support.atomic_moto import make_dynamodb_requests_atomic
    from tests.support.table import create_table

    make_dynamodb_requests_atomic()
    with mock_aws():
        create_table(boto3.client("dynamodb"), TABLE)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        _forget_containers(entities, factory, settings)
        yield
        _forget_containers(entities, factory, settings)


def _forget_containers(entities: object, factory: object, settings: object) -> None:
    """A new test sees a fresh catalog; clients are kept, as moto intercepts them in every test."""
    factory.get_catalog.cache_clear()  # type: ignore[attr-defined]
