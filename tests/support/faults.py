"""Inject AWS faults on random calls through botocore's own event hooks, with a seeded RNG.

`before-call` handlers answer instead of the service (the call never reaches it: nothing is written),
as DynamoDB does once botocore's own retries are spent; `after-call` handlers lose the answer of a call
the service did apply (a read timeout after the commit).
"""

import json
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

from tests.support.service_events import service_client

THROTTLES = ("ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded")
BEFORE = (*THROTTLES, "TransactionConflict", "ReadTimeout", "ConnectTimeout")
LOST_ANSWER = "ReadTimeoutAfterCommit"
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


@dataclass
class _Http:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes = b""


@dataclass
class Faults:
    """`rate` of the calls fail, each with one of `kinds`; `injected` counts them by kind and operation."""

    rng: random.Random
    rate: float
    kinds: tuple[str, ...] = BEFORE
    enabled: bool = True
    injected: Counter[str] = field(default_factory=Counter)
    calls: int = 0

    def before_call(self, model: Any, params: Any, context: dict[str, Any], **_: Any) -> Any:
        self.calls += 1
        if not self.enabled or self.rng.random() >= self.rate:
            return None
        kind = self.rng.choice(self.kinds)
        operation = model.name
        if kind == "TransactionConflict" and operation != "TransactWriteItems":
            return None  # only transactions conflict
        if kind == LOST_ANSWER:
            if operation in WRITES:
                context["lose_answer"] = True  # applied by the service; after_call loses the answer
            return None
        self.injected[f"{kind}:{operation}"] += 1
        if kind == "ReadTimeout":
            raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")
        if kind == "ConnectTimeout":
            raise ConnectTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")
        if kind == "TransactionConflict":
            body = params.get("body") or b"{}"
            items = json.loads(body).get("TransactItems") or [{}]
            reasons = [{"Code": "None"} for _ in items]
            reasons[self.rng.randrange(len(reasons))] = {
                "Code": "TransactionConflict",
                "Message": "Transaction is ongoing for the item",
            }
            error = {
                "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
                "CancellationReasons": reasons,
            }
            return _Http(400), error
        return _Http(400), {"Error": {"Code": kind, "Message": "injected"}, "ResponseMetadata": {}}

    def after_call(self, model: Any, http_response: Any, context: dict[str, Any], **_: Any) -> None:
        if context.pop("lose_answer", False) and http_response.status_code < 300:
            self.injected[f"{LOST_ANSWER}:{model.name}"] += 1
            raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")


@contextmanager
def injecting(faults: Faults) -> Iterator[Faults]:
    """Faults on every DynamoDB call the service makes, whichever of its clients makes it, for the block."""
    events = service_client().meta.events
    events.register_first("before-call.dynamodb", faults.before_call, unique_id="faults-b")
    # After every other after-call hook (the ClientRequestToken bridge records the commit first).
    events.register_last("after-call.dynamodb", faults.after_call, unique_id="faults-a")
    try:
        yield faults
    finally:
        events.unregister("before-call.dynamodb", unique_id="faults-b")
        events.unregister("after-call.dynamodb", unique_id="faults-a")
