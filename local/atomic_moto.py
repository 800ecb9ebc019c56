"""Make moto's DynamoDB apply each request atomically, as DynamoDB does.

moto runs a TransactWriteItems as a sequence of item writes and restores a snapshot of the
whole table when one fails; two threads interleaving there could lose each other's writes.
DynamoDB never does that, so every DynamoDB request is serialised here (requests, not clients:
the races between a read and a later write, which the service must handle, remain).
"""

import threading
from typing import Any

from moto.dynamodb.responses import DynamoHandler

_lock = threading.RLock()
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
    _installed = True
