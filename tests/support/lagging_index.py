"""A test double for DynamoDB's global secondary indexes, which lag the table; moto's never do.

Every Query of an index (gsi1, gsi2) that the service's client sends is answered from a shadow table
holding the table as it was `lag` ago: the table's stream records are applied to the shadow once they
are that old, by the double's clock, from the service's write that made them (or, for a write made
by another client, from when the double first saw it, so the lag is never shorter than asked).
Base-table reads are untouched. `catch_up()` applies everything at once: what a
client waiting out the lag would see. `held()` keeps every write made from then on out of the
index until it ends, whatever the clock says: a test that needs the index behind the table must not
depend on how fast a busy machine runs it.

It uses botocore's public event hooks (`provide-client-params`) on the service's own client and
moto's in-process stream, as tests/support/streams.py does.
"""

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from tests.support.atomic_moto import between_requests
from tests.support.table import create_table

SHADOW_SUFFIX = "-index-view"
BATCH_WRITE = 25  # BatchWriteItem's most
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


class LaggingIndexes:
    def __init__(self, table_name: str, lag_seconds: float, clock: Callable[[], float] = time.time) -> None:
        import boto3
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends

        self.table_name = table_name
        self.shadow_name = table_name + SHADOW_SUFFIX
        self.lag = lag_seconds
        self._clock = clock
        self._writer = boto3.client("dynamodb")  # unhooked: the shadow's own writes are not queries
        create_table(self._writer, self.shadow_name, stream=False)
        backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][os.environ["AWS_DEFAULT_REGION"]]
        table = backend.get_table(table_name)
        assert table.stream_shard is not None, "the table has no stream"
        self._shard = table.stream_shard
        self._next = 0
        self._held_from: float | None = None  # while held: writes seen after this stay out of the index
        self._pending: list[tuple[float, dict[str, Any]]] = []  # (first seen, stream record)
        self.queries = 0
        # A report Queries its shards from several threads: records must reach the shadow once each,
        # in the stream's order, or an older image lands after a newer one.
        self._lock = threading.RLock()

    def install(self, client: Any) -> "LaggingIndexes":
        events = client.meta.events
        events.register_first("provide-client-params.dynamodb.Query", self._redirect, unique_id="lagging-q")
        events.register("after-call.dynamodb", self._written, unique_id="lagging-w")
        return self

    def uninstall(self, client: Any) -> None:
        client.meta.events.unregister("provide-client-params.dynamodb.Query", unique_id="lagging-q")
        client.meta.events.unregister("after-call.dynamodb", unique_id="lagging-w")

    def catch_up(self) -> None:
        """The index as it is once the lag has passed for every write made so far."""
        self._apply(until=float("inf"))

    @contextmanager
    def held(self) -> Iterator[None]:
        """While inside, no write made from now on reaches the index, however long the test takes."""
        self._ingest()  # what was written before stays on its own schedule
        self._held_from = self._clock()
        try:
            yield
        finally:
            self._held_from = None

    def _redirect(self, params: dict[str, Any], **_: Any) -> None:
        if params.get("TableName") != self.table_name or "IndexName" not in params:
            return
        self.queries += 1
        until = self._clock() - self.lag
        self._apply(until=until if self._held_from is None else min(until, self._held_from))
        params["TableName"] = self.shadow_name

    def _written(self, model: Any, **_: Any) -> None:
        """A write of the service's: its stream records are stamped now, when they were made."""
        if model.name in WRITES:
            self._ingest()

    def _ingest(self) -> None:
        with self._lock, between_requests():
            now = self._clock()
            fresh = self._shard.items[self._next :]
            self._next += len(fresh)
            records = [json.loads(json.dumps(item.to_json(), default=_plain)) for item in fresh]
            self._pending.extend((now, record) for record in records)

    def _apply(self, until: float) -> None:
        with self._lock:
            self._ingest()  # records of writes made by other clients: stamped when first seen
            due = [record for seen, record in self._pending if seen <= until]
            self._pending = [(seen, record) for seen, record in self._pending if seen > until]
            # Only each item's last image matters once they are all applied: one write an item, in batches
            latest = {
                json.dumps(record["dynamodb"]["Keys"], sort_keys=True): record["dynamodb"] for record in due
            }
            writes = [
                {"PutRequest": {"Item": change["NewImage"]}}
                if "NewImage" in change
                else {"DeleteRequest": {"Key": change["Keys"]}}
                for change in latest.values()
            ]
            for start in range(0, len(writes), BATCH_WRITE):
                answer = self._writer.batch_write_item(
                    RequestItems={self.shadow_name: writes[start : start + BATCH_WRITE]}
                )
                assert not answer.get("UnprocessedItems"), answer


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(type(value))
