"""A meter of every DynamoDB request the service makes: which items and partitions it writes, and an
estimate of the write capacity it consumes there, because moto's consumed-capacity figures are
placeholders.

Estimate (DynamoDB's billing rules, on-demand): a write of an item costs ceil(size / 1 KB) units,
the larger of the item before and after; a transactional write or condition check costs twice that;
every global secondary index whose key the item carries takes a write of the item's projected size
(ALL here) on the index partition of that key, and one on the old partition when the key changed.
Partitions are counted by partition key value (of the table or an index): the unit of a hot key.

It listens through botocore's public event hooks on the service's client, and reads items before and
after each write from moto's in-process backend (moto only: the bench runs on moto).
"""

import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

KB = 1024
INDEX_KEYS = {"gsi1": "gsi1pk", "gsi2": "gsi2pk"}
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


@dataclass
class Meter:
    table: str
    item_units: Counter[tuple[str, str]] = field(default_factory=Counter)  # (pk, sk) → units
    partition_units: Counter[str] = field(default_factory=Counter)  # "table:pk" or "gsi1:pk" → units
    requests: Counter[str] = field(default_factory=Counter)

    @property
    def total_item_units(self) -> int:
        return sum(self.item_units.values())

    def hottest_item(self) -> tuple[tuple[str, str], int]:
        return self.item_units.most_common(1)[0] if self.item_units else (("", ""), 0)

    def hottest_partition(self) -> tuple[str, int]:
        return self.partition_units.most_common(1)[0] if self.partition_units else ("", 0)

    def hottest_item_write_share(self) -> float:
        total = self.total_item_units
        return self.hottest_item()[1] / total if total else 0.0

    def hottest_partition_units_per_1k(self, updates: int) -> float:
        return self.hottest_partition()[1] / (updates / 1000)

    # --- botocore hooks -------------------------------------------------------------------------

    def before_call(self, model: Any, params: Any, context: dict[str, Any], **_: Any) -> None:
        self.requests[model.name] += 1
        if model.name not in WRITES:
            return
        body = json.loads(params.get("body") or b"{}")
        writes = list(self._writes(model.name, body))
        context["meter"] = [(key, doubled, self._item(key)) for key, doubled in writes]

    def after_call(self, http_response: Any, context: dict[str, Any], **_: Any) -> None:
        written = context.pop("meter", None)
        if written is None or http_response.status_code >= 300:
            return
        for key, doubled, before in written:
            self._charge(key, before, self._item(key), 2 if doubled else 1)

    # --- what a request writes --------------------------------------------------------------------

    def _writes(self, operation: str, body: dict[str, Any]) -> Iterator[tuple[tuple[str, str], bool]]:
        if operation == "PutItem":
            yield _key(body["Item"]), False
        elif operation in ("UpdateItem", "DeleteItem"):
            yield _key(body["Key"]), False
        elif operation == "BatchWriteItem":
            for request in body["RequestItems"].get(self.table, []):
                if "PutRequest" in request:
                    yield _key(request["PutRequest"]["Item"]), False
                else:
                    yield _key(request["DeleteRequest"]["Key"]), False
        else:
            for action in body["TransactItems"]:
                (kind, detail), *_ = action.items()
                yield _key(detail["Item"] if kind == "Put" else detail["Key"]), True

    def _charge(
        self, key: tuple[str, str], before: dict[str, Any] | None, after: dict[str, Any] | None, times: int
    ) -> None:
        units = _units(max(_size(before), _size(after))) * times
        self.item_units[key] += units
        self.partition_units[f"table:{key[0]}"] += units
        for index, attribute in INDEX_KEYS.items():
            old, new = _text(before, attribute), _text(after, attribute)
            if new is not None:
                self.partition_units[f"{index}:{new}"] += _units(_size(after))
            if old is not None and old != new:
                self.partition_units[f"{index}:{old}"] += _units(_size(before))

    def _item(self, key: tuple[str, str]) -> dict[str, Any] | None:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends

        backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][os.environ["AWS_DEFAULT_REGION"]]
        item = backend.get_table(self.table).get_item(_value(key[0]), _value(key[1]))
        return None if item is None else item.to_json()["Attributes"]


@contextmanager
def metering(table: str, clients: list[Any]) -> Iterator[Meter]:
    meter = Meter(table)
    for client in clients:
        client.meta.events.register("before-call.dynamodb", meter.before_call, unique_id="meter-b")
        client.meta.events.register("after-call.dynamodb", meter.after_call, unique_id="meter-a")
    try:
        yield meter
    finally:
        for client in clients:
            client.meta.events.unregister("before-call.dynamodb", unique_id="meter-b")
            client.meta.events.unregister("after-call.dynamodb", unique_id="meter-a")


def _key(item: dict[str, Any]) -> tuple[str, str]:
    return item["pk"]["S"], item["sk"]["S"]


def _value(text: str) -> Any:
    from moto.dynamodb.models.dynamo_type import DynamoType

    return DynamoType({"S": text})


def _text(item: dict[str, Any] | None, attribute: str) -> str | None:
    if item is None or attribute not in item:
        return None
    return str(item[attribute]["S"])


def _units(size: int) -> int:
    return max(1, math.ceil(size / KB))


def item_size(item: dict[str, Any] | None) -> int:
    """An item's size as DynamoDB bills reads and writes of it."""
    return _size(item)


def _size(item: dict[str, Any] | None) -> int:
    """DynamoDB's item size: attribute names plus values (numbers about 1 byte per 2 digits + 1)."""
    if item is None:
        return 0
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    (kind, content), *_ = value.items()
    if kind == "S":
        return len(content.encode())
    if kind == "N":
        return len(content.lstrip("-").replace(".", "")) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS"):
        return sum(_value_size({kind[0]: entry}) for entry in content)
    if kind == "L":
        return 3 + sum(1 + _value_size(entry) for entry in content)
    if kind == "M":
        return 3 + sum(len(name.encode()) + 1 + _value_size(entry) for name, entry in content.items())
    return len(str(content))
