"""Make moto's DynamoDB behave like DynamoDB where the in-process tests and benchmarks depend on it.

A bridge over moto's internals, in tests only: tests/unit/test_moto_bridges.py tells when each part is no
longer needed.

Atomic requests:
moto runs a TransactWriteItems as a sequence of item writes and restores a snapshot of the
whole table when one fails; two threads interleaving there could lose each other's writes.
DynamoDB never does that, so every DynamoDB request is serialised here (requests, not clients:
the races between a read and a later write, which the service must handle, remain).

Transactions without table copies:
moto deep-copies the whole table (every item and every stream record it ever had) for each
TransactWriteItems, which made a transaction slow down as the table grew: ~150 ms at 2,000 items.
A transaction touches at most 100 items, each once, so only those are saved; a failed transaction
puts them back and drops the stream records it made, which leaves the table exactly as a copy would.

(moto also keeps every model object it makes in a class-level list for its dashboard. That list once
held each transaction's table copy and grew the long-running local runtime to 24 GB; with no table
copies and no in-process runtime left it costs the tests ~30 MB, so it is no longer patched.)
"""

import threading
from typing import Any

from moto.dynamodb.responses import DynamoHandler

_lock = threading.RLock()
# Answers made only of items and keys, which the plain JSON dump renders exactly as the serialiser does.
ITEM_OPERATIONS = {
    "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan",
    "BatchGetItem", "BatchWriteItem", "TransactGetItems", "TransactWriteItems",
}  # fmt: skip
_installed = False


def between_requests() -> threading.RLock:
    """The lock every DynamoDB request holds while moto serves it: read moto's state (its stream) under
    it, never in the middle of a request. A failed transaction appends its stream records, then drops
    them when it rolls back; a reader in between would count records that never were, and skip as
    many later ones."""
    return _lock


def make_dynamodb_requests_atomic() -> None:
    global _installed
    if _installed:
        return
    original = DynamoHandler.call_action

    def call_action(self: DynamoHandler) -> Any:
        with _lock:
            return original(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
    serialise_dynamodb_results_directly()
    roll_back_transactions_item_by_item()
    query_without_sorting_the_table()
    _installed = True


def serialise_dynamodb_results_directly() -> None:
    """moto 5.2 serialises every DynamoDB answer through a generic, model-driven serialiser that
    costs ~5 ms per returned item; a page of a big segment's members then takes seconds. DynamoDB's
    JSON protocol needs no reshaping, so the plain JSON dump moto used before gives the same bytes."""
    from moto.dynamodb.models.utilities import dynamo_json_dump
    from moto.dynamodb.responses import DynamoResult

    original = DynamoResult.execute_result

    def execute_result(self: DynamoResult, context: Any) -> Any:
        if context.operation_model.name not in ITEM_OPERATIONS:
            return original(self, context)
        return 200, {"Content-Type": "application/x-amz-json-1.0"}, dynamo_json_dump(self.result)

    DynamoResult.execute_result = execute_result  # type: ignore[method-assign,assignment]


def query_without_sorting_the_table() -> None:
    """moto's Query sorts every item of the table (`Table.all_items`) before it keeps those of the
    partition asked for, then sorts what it kept: each Query costs a sort of the whole table, ~0.1 s at
    20,000 items. Here a Query of the table is handed its partition's items alone and a Query of an
    index every item unsorted; what it keeps and how it sorts them is moto's, so it answers the same."""
    import inspect

    from moto.dynamodb.models.table import Table

    original = Table.query
    signature = inspect.signature(original)

    def query(self: Table, *arguments: Any, **keywords: Any) -> Any:
        named = signature.bind(self, *arguments, **keywords).arguments
        if named.get("index_name"):
            candidates = [item for partition in self.items.values() for item in _items_of(self, partition)]
            # a string key is the same string: the rest cannot match (moto compares them all again)
            index = next((i for i in self.all_indexes() if i.name == named["index_name"]), None)
            hashes = (
                [key["AttributeName"] for key in index.schema if key["KeyType"] == "HASH"] if index else []
            )
            wanted = named["hash_key"]
            if len(hashes) == 1 and wanted is not None and wanted.type == "S":
                candidates = [
                    item for item in candidates if _string(item.attrs.get(hashes[0])) == wanted.value
                ]
        else:
            candidates = list(_items_of(self, self.items.get(named["hash_key"], {})))
        self.all_items = lambda: candidates  # type: ignore[method-assign]
        try:
            return original(self, *arguments, **keywords)
        finally:
            del self.all_items

    Table.query = query  # type: ignore[method-assign]


def _string(value: Any) -> str | None:
    return value.value if value is not None and value.type == "S" else None


def _items_of(table: Any, partition: Any) -> list[Any]:
    """A partition's items: moto keeps a dict of them by sort key, or the item itself without one."""
    if not partition:
        return []
    return list(partition.values()) if table.range_key_attr else [partition]


def roll_back_transactions_item_by_item() -> None:
    import copy
    import types

    import moto.dynamodb.models as models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    original = DynamoDBBackend.transact_write_items

    def deepcopy(thing: Any, memo: Any = None) -> Any:
        return thing if isinstance(thing, Table) else copy.deepcopy(thing, memo)

    without_table_copies = types.SimpleNamespace(copy=copy.copy, deepcopy=deepcopy)

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        try:
            saved = [_saved_item(self, item) for item in transact_items]
        except Exception:  # a request moto will reject anyway: its own path, copies and all
            return original(self, transact_items)
        tables = {id(table): table for table, _, _ in saved}
        shards = {ident: table.stream_shard for ident, table in tables.items() if table.stream_shard}
        records = {ident: len(shard.items) for ident, shard in shards.items()}
        models.copy = without_table_copies  # type: ignore[assignment]
        try:
            return original(self, transact_items)
        except Exception:
            for table, key, before in saved:
                hash_key, range_key = self.get_keys_value(table, key)
                table.delete_item(hash_key, range_key)
                if range_key is not None and not table.items.get(hash_key, True):
                    del table.items[hash_key]  # as if the item had never been put
                if before is not None:
                    table.put_item(before)
            for ident, count in records.items():
                del shards[ident].items[count:]
            raise
        finally:
            models.copy = copy

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def _saved_item(backend: Any, item: dict[str, Any]) -> tuple[Any, dict[str, Any], dict[str, Any] | None]:
    """(table, key, the item's attributes before the transaction or None) of one transaction entry."""
    import copy

    op_type, op = next(iter(item.items()))
    table = backend.get_table(op["TableName"])
    if op_type == "Put":
        names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
        key = {name: op["Item"][name] for name in names}
    else:
        key = op["Key"]
    current = backend.get_item(op["TableName"], key)
    return table, key, None if current is None else copy.deepcopy(current.to_json()["Attributes"])
