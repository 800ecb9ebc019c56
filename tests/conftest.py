"""Every test runs against moto's in-process AWS, with the table built from template.yaml."""

import os
from collections.abc import Iterator

import pytest

TABLE = "segments-test"
BUCKET = "segments-reports-test"

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        # moto 5 streams: newer botocore would route stream calls to an account endpoint moto does not know.
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "TABLE_NAME": TABLE,
        "REPORTS_BUCKET": BUCKET,
        "CATALOG_CACHE_SECONDS": "0",
        "POWERTOOLS_SERVICE_NAME": "segments",
        "POWERTOOLS_METRICS_NAMESPACE": "Segments",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_DEV": "false",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)


@pytest.fixture
def aws() -> Iterator[None]:
    """moto's AWS with the service's table and bucket, and every per-container cache emptied."""
    import boto3
    from moto import mock_aws

    from dal import entities, factory
    from local.atomic_moto import make_dynamodb_requests_atomic
    from shared import settings
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
