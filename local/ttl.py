"""DynamoDB TTL, which moto lacks: expired items are deleted by 'the service', visibly so in the stream."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from moto.dynamodb.models import dynamodb_backends

from local.template import ACCOUNT_ID, REGION

log = logging.getLogger("local.ttl")

# DynamoDB ignores ttl values more than five years in the past (they are likely not epoch seconds).
_IGNORED_AGE_S = 5 * 365 * 24 * 3600


class TtlMarks:
    """Sequence numbers of the REMOVE records the sweeper caused.

    The sweeper holds the lock from its delete until it has noted the record, and the poller takes it
    before labelling records, so no TTL deletion is ever delivered without its service identity.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._sequence_numbers: set[str] = set()

    def add(self, sequence_number: str) -> None:
        self._sequence_numbers.add(sequence_number)

    def __contains__(self, sequence_number: object) -> bool:
        return sequence_number in self._sequence_numbers


class TtlSweeper:
    def __init__(
        self, dynamodb: Any, table_name: str, attribute: str, key_names: list[str], marks: TtlMarks
    ) -> None:
        self.dynamodb = dynamodb
        self.table_name = table_name
        self.attribute = attribute
        self.key_names = key_names
        self.marks = marks

    def sweep(self, now: float | None = None) -> int:
        """Deletes every expired item still holding the ttl it expired with; returns how many."""
        now = time.time() if now is None else now
        deleted = 0
        for item in self._expired(now):
            if self._delete(item):
                deleted += 1
        return deleted

    def _expired(self, now: float) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        arguments: dict[str, Any] = {
            "TableName": self.table_name,
            # DynamoDB TTL only reads numbers; the type test first also keeps moto from comparing str to N.
            "FilterExpression": "attribute_type(#ttl, :number) AND #ttl < :now AND #ttl > :oldest",
            "ExpressionAttributeNames": {"#ttl": self.attribute},
            "ExpressionAttributeValues": {
                ":number": {"S": "N"},
                ":now": {"N": str(int(now))},
                ":oldest": {"N": str(int(now) - _IGNORED_AGE_S)},
            },
        }
        while True:
            page = self.dynamodb.scan(**arguments)
            found.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return found
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _delete(self, item: dict[str, Any]) -> bool:
        key = {name: item[name] for name in self.key_names}
        with self.marks.lock:
            try:
                # Conditional: an item rewritten with a later ttl since the scan must survive.
                self.dynamodb.delete_item(
                    TableName=self.table_name,
                    Key=key,
                    ConditionExpression="#ttl = :ttl",
                    ExpressionAttributeNames={"#ttl": self.attribute},
                    ExpressionAttributeValues={":ttl": item[self.attribute]},
                )
            except self.dynamodb.exceptions.ConditionalCheckFailedException:
                return False
            sequence_number = _latest_remove(self.table_name, key)
            if sequence_number is not None:
                self.marks.add(sequence_number)
        log.info("ttl expired %s", key)
        return True


def _latest_remove(table_name: str, key: dict[str, Any]) -> str | None:
    """The sequence number of the REMOVE record the delete just wrote.

    moto's server runs in this process, so its shard is read directly: the stream API cannot say
    which record a given request produced.
    """
    table = dynamodb_backends[ACCOUNT_ID][REGION].get_table(table_name)
    shard = table.stream_shard
    if shard is None:
        return None
    for record in reversed(shard.items):
        body = record.record
        if body["eventName"] == "REMOVE" and body["dynamodb"]["Keys"] == key:
            return str(body["dynamodb"]["SequenceNumber"])
    return None


def run_sweeper(sweeper: TtlSweeper, stop: threading.Event, interval_s: float = 1.0) -> None:
    while not stop.wait(interval_s):
        try:
            sweeper.sweep()
        except Exception:  # keep sweeping after a transient failure, as the service would
            log.exception("ttl sweep failed")
