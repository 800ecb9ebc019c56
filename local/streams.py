"""Event source mappings: each stream function polls every shard of the table's stream on its own."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from moto.dynamodb.models import dynamodb_backends
from moto.dynamodbstreams.models import dynamodbstreams_backends

from local.event_filters import matches_any
from local.lambda_host import LambdaHost
from local.stream_batches import BatchDelivery
from local.stream_records import lambda_record
from local.template import ACCOUNT_ID, REGION, StreamSource
from local.ttl import TtlMarks

log = logging.getLogger("local.streams")


class EventSourceMapping:
    """One function's mapping: a checkpoint per shard, advanced only past delivered records."""

    def __init__(
        self,
        function_name: str,
        source: StreamSource,
        stream_arn: str,
        streams: Any,
        host: LambdaHost,
        failures: Any,
        failure_queue_url: str | None,
        marks: TtlMarks,
        checkpoints: dict[str, str] | None = None,
    ) -> None:
        self.function_name = function_name
        self.source = source
        self.stream_arn = stream_arn
        self.streams = streams
        self.host = host
        self.failures = failures
        self.failure_queue_url = failure_queue_url
        self.marks = marks
        self.checkpoints: dict[str, str] = dict(checkpoints or {})

    def poll_once(self) -> int:
        """Reads what is new on every shard and delivers it; returns how many records were read."""
        description = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        return sum(self._poll_shard(shard["ShardId"]) for shard in description["Shards"])

    def _poll_shard(self, shard_id: str) -> int:
        records = self._read(shard_id)
        if not records:
            return 0
        with self.marks.lock:  # see TtlMarks: label only after the sweeper has noted its deletions
            converted = [
                lambda_record(record, self.stream_arn, record["dynamodb"]["SequenceNumber"] in self.marks)
                for record in records
            ]
        selected = [record for record in converted if matches_any(self.source.filter_patterns, record)]
        if selected:
            delivery = BatchDelivery(
                self.function_name, self.source, self._invoke, self._send_failure, self.stream_arn, shard_id
            )
            delivery.deliver(selected)
        self.checkpoints[shard_id] = records[-1]["dynamodb"]["SequenceNumber"]
        return len(records)

    def _read(self, shard_id: str) -> list[dict[str, Any]]:
        checkpoint = self.checkpoints.get(shard_id)
        arguments: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard_id}
        if checkpoint is not None:
            arguments.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=checkpoint)
        else:
            arguments["ShardIteratorType"] = self.source.starting_position
        iterator = self.streams.get_shard_iterator(**arguments)["ShardIterator"]
        page = self.streams.get_records(ShardIterator=iterator, Limit=1000)
        _forget_iterators(iterator, page.get("NextShardIterator"))
        records: list[dict[str, Any]] = page.get("Records", [])
        return records

    def _invoke(self, event: dict[str, Any]) -> Any:
        return self.host.invoke(self.function_name, event)

    def _send_failure(self, message: dict[str, Any]) -> None:
        if self.failure_queue_url is not None:
            self.failures.send_message(QueueUrl=self.failure_queue_url, MessageBody=json.dumps(message))


def current_positions(table_name: str) -> dict[str, str]:
    """The last sequence number of each shard now: where LATEST mappings, and mappings after a
    restore from a snapshot, begin (the restore's own writes are not new changes)."""
    shard = dynamodb_backends[ACCOUNT_ID][REGION].get_table(table_name).stream_shard
    if shard is None or not shard.items:
        return {}
    return {shard.id: str(shard.items[-1].record["dynamodb"]["SequenceNumber"])}


def _forget_iterators(*arns: str | None) -> None:
    """moto keeps every iterator forever; polling several times a second would grow without bound."""
    backend = dynamodbstreams_backends[ACCOUNT_ID][REGION]
    for arn in arns:
        if arn is not None:
            backend.shard_iterators.pop(arn, None)


def run_mapping(mapping: EventSourceMapping, stop: threading.Event, interval_s: float = 0.15) -> None:
    while not stop.is_set():
        try:
            read = mapping.poll_once()
        except Exception:  # a failed poll is retried on the next tick, as Lambda's poller does
            log.exception("%s: stream poll failed", mapping.function_name)
            read = 0
        if not read:
            stop.wait(interval_s)
