"""Deliver the table's DynamoDB stream to a stream handler in-process, as Lambda's poller would."""

import importlib
import json
import os
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from tests.support.api import FakeContext
from tests.support.atomic_moto import between_requests
from tests.support.event_filters import matches_any
from tests.support.table import load_yaml_template

Record = dict[str, Any]


class StreamTap:
    """The table's stream as Lambda's poller sees it; each call returns only records not returned before.

    Reads moto's in-process stream shard directly: moto's GetRecords serialiser costs ~10 ms a record,
    which would make tests of thousands of changes take minutes. The records are the same ones.
    """

    def __init__(self, table_name: str) -> None:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends

        table = dynamodb_backends[DEFAULT_ACCOUNT_ID][os.environ["AWS_DEFAULT_REGION"]].get_table(table_name)
        assert table.stream_shard is not None and table.latest_stream_label, "the table has no stream"
        self._shard = table.stream_shard
        self._arn = f"{table.table_arn}/stream/{table.latest_stream_label}"
        self._next = 0

    def new_records(self) -> list[Record]:
        with between_requests():  # never the records of a transaction that may yet roll back
            items = self._shard.items[self._next :]
            self._next += len(items)
        return [
            lambda_record(json.loads(json.dumps(item.to_json(), default=_plain)), self._arn) for item in items
        ]


def lambda_record(record: Record, stream_arn: str) -> Record:
    """A DynamoDB Streams record as Lambda puts it in a stream event."""
    converted: Record = {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", os.environ["AWS_DEFAULT_REGION"]),
        "dynamodb": record["dynamodb"],
        "eventSourceARN": stream_arn,
    }
    if "userIdentity" in record:
        converted["userIdentity"] = record["userIdentity"]
    return converted


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(type(value))


def template_filter(function_logical_id: str) -> Callable[[Record], bool]:
    """The FilterCriteria of the function's stream event in template.yaml, for the patterns it uses."""
    resource = load_yaml_template()["Resources"][function_logical_id]
    events = resource["Properties"]["Events"].values()
    patterns = [
        json.loads(item["Pattern"])
        for event in events
        if event["Type"] == "DynamoDB"
        for item in event["Properties"].get("FilterCriteria", {}).get("Filters", [])
    ]
    return lambda record: not patterns or matches_any(patterns, record)


def deliver(
    handler_module: str, records: list[Record], batch_size: int = 10, accept: Callable[[Record], bool] = bool
) -> list[dict[str, Any]]:
    """Invoke the handler with the accepted records in batches; returns each batch's response."""
    handler = importlib.import_module(f"handlers.{handler_module}").lambda_handler
    chosen = [record for record in records if accept(record)]
    responses = []
    for start in range(0, len(chosen), batch_size):
        responses.append(handler({"Records": chosen[start : start + batch_size]}, FakeContext()))
    return responses
