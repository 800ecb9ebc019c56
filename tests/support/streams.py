"""Deliver the table's DynamoDB stream to a stream handler in-process, as Lambda's poller would."""

import importlib
import json
from collections.abc import Callable
from typing import Any

import boto3

from local.event_filters import matches_any
from local.stream_records import lambda_record
from tests.support.api import FakeContext
from tests.support.table import load_yaml_template

Record = dict[str, Any]


class StreamTap:
    """Reads every shard from the start; each call returns only records not returned before."""

    def __init__(self, table_name: str) -> None:
        self._streams = boto3.client("dynamodbstreams")
        self._arn = boto3.client("dynamodb").describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
        self._seen: set[str] = set()

    def new_records(self) -> list[Record]:
        shards = self._streams.describe_stream(StreamArn=self._arn)["StreamDescription"]["Shards"]
        found = []
        for shard in shards:
            iterator = self._streams.get_shard_iterator(
                StreamArn=self._arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while iterator:
                page = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                for record in page["Records"]:
                    if record["dynamodb"]["SequenceNumber"] not in self._seen:
                        self._seen.add(record["dynamodb"]["SequenceNumber"])
                        found.append(lambda_record(record, self._arn, deleted_by_ttl=False))
                if not page["Records"]:
                    break
                iterator = page.get("NextShardIterator")
        return found


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
