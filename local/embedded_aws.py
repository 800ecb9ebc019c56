"""moto's server on loopback, the environment handlers use to reach it, and the stack's resources."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

from local.atomic_moto import make_dynamodb_requests_atomic
from local.template import REGION, Stack, TableSpec

log = logging.getLogger("local.aws")

# Settings every handler and every client in this process sees; no code branches on them.
AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    # botocore's account-based endpoints send stream calls to a host moto does not know.
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    # Presigned links must work from the host with curl: http://127.0.0.1:<port>/<bucket>/<key>.
    "AWS_S3_ADDRESSING_STYLE": "path",
}

_TABLE_KEYS = (
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
    "ProvisionedThroughput",
    "StreamSpecification",
)


def _ensure_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            raise OSError(f"port {port} for the embedded AWS endpoint is in use (--aws-port)") from error


class EmbeddedAws:
    def __init__(self, port: int) -> None:
        self.port = port
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        _ensure_free(self.port)  # moto's thread would hang start() on a busy port instead of failing
        os.environ.update(AWS_ENVIRONMENT)
        os.environ["AWS_ENDPOINT_URL"] = self.endpoint_url
        # Concurrent handler threads must see DynamoDB's per-request atomicity, not moto's.
        make_dynamodb_requests_atomic()
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def client(self, service: str) -> Any:
        config = Config(retries={"max_attempts": 2}, s3={"addressing_style": "path"})
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=REGION, config=config)

    def create_resources(self, stack: Stack) -> str:
        """Creates the table, buckets and queues; returns the table's stream ARN."""
        s3 = self.client("s3")
        for bucket in stack.buckets.values():
            s3.create_bucket(Bucket=bucket)
        sqs = self.client("sqs")
        for queue in stack.queues.values():
            sqs.create_queue(QueueName=queue)
        return self.create_table(stack.table)

    def create_table(self, table: TableSpec) -> str:
        return create_table(self.client("dynamodb"), table)


def create_table(dynamodb: Any, table: TableSpec) -> str:
    """Create the table from its template definition (keys, indexes, stream, TTL); returns the stream ARN."""
    arguments = {key: table.properties[key] for key in _TABLE_KEYS if key in table.properties}
    stream = arguments.get("StreamSpecification")
    if stream is not None:
        arguments["StreamSpecification"] = {"StreamEnabled": True, **stream}
    description = dynamodb.create_table(TableName=table.name, **arguments)["TableDescription"]
    if table.ttl_attribute:
        dynamodb.update_time_to_live(
            TableName=table.name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
        )
    return str(description.get("LatestStreamArn", ""))
