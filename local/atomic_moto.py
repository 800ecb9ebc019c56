"""Make moto's DynamoDB behave like DynamoDB where tests and the local runtime depend on it.

Atomic requests:
moto runs a TransactWriteItems as a sequence of item writes and restores a snapshot of the
whole table when one fails; two threads interleaving there could lose each other's writes.
DynamoDB never does that, so every DynamoDB request is serialised here (requests, not clients:
the races between a read and a later write, which the service must handle, remain).
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
