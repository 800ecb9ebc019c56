"""How Lambda's event source mapping delivers stream records: batches, partial failures, retries,
bisection and the on-failure destination. Pure logic, so it is tested without a stream."""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from local.lambda_host import FunctionError
from local.template import ACCOUNT_ID, REGION, StreamSource

log = logging.getLogger("local.streams")

Invoke = Callable[[dict[str, Any]], Any]
SendFailure = Callable[[dict[str, Any]], None]


@dataclass
class _Attempt:
    records: list[dict[str, Any]]
    retries: int = 0


class BatchDelivery:
    """Delivers one function's records from one shard until each is processed or given up on."""

    def __init__(
        self,
        function_name: str,
        source: StreamSource,
        invoke: Invoke,
        send_failure: SendFailure,
        stream_arn: str,
        shard_id: str,
        retry_delay_s: float = 0.2,
    ) -> None:
        self.function_name = function_name
        self.source = source
        self.invoke = invoke
        self.send_failure = send_failure
        self.stream_arn = stream_arn
        self.shard_id = shard_id
        self.retry_delay_s = retry_delay_s

    def deliver(self, records: list[dict[str, Any]]) -> None:
        size = self.source.batch_size
        pending = deque(_Attempt(records[start : start + size]) for start in range(0, len(records), size))
        while pending:
            attempt = pending.popleft()
            failed_at, function_error = self._run(attempt.records)
            if failed_at is None:
                continue
            remaining = attempt.records[failed_at:]
            limit = self.source.maximum_retry_attempts
            if limit != -1 and attempt.retries >= limit:
                self._give_up(remaining, attempt.retries + 1)
                continue
            time.sleep(self.retry_delay_s)
            if function_error and self.source.bisect_on_error and len(remaining) > 1:
                half = len(remaining) // 2
                pending.appendleft(_Attempt(remaining[half:], attempt.retries + 1))
                pending.appendleft(_Attempt(remaining[:half], attempt.retries + 1))
            else:
                pending.appendleft(_Attempt(remaining, attempt.retries + 1))

    def _run(self, records: list[dict[str, Any]]) -> tuple[int | None, bool]:
        """(index of the first record to retry or None on success, whether the function raised)."""
        try:
            result = self.invoke({"Records": records})
        except FunctionError:
            return 0, True
        if not self.source.report_batch_item_failures:
            return None, False
        return first_failed_index(result, records), False

    def _give_up(self, records: list[dict[str, Any]], invocations: int) -> None:
        message = failure_message(self.function_name, self.stream_arn, self.shard_id, records, invocations)
        log.error(
            "%s: giving up on %d record(s) from %s: %s",
            self.function_name,
            len(records),
            message["DDBStreamBatchInfo"]["startSequenceNumber"],
            message,
        )
        self.send_failure(message)


def first_failed_index(result: Any, records: list[dict[str, Any]]) -> int | None:
    """Where Lambda restarts after a partial-batch response; a malformed response fails it all."""
    if result is None or not isinstance(result, dict):
        return None
    failures = result.get("batchItemFailures")
    if not failures:
        return None
    positions = {record["dynamodb"]["SequenceNumber"]: index for index, record in enumerate(records)}
    indexes = []
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if identifier not in positions:
            return 0  # Lambda treats an unknown or empty identifier as a failure of the whole batch
        indexes.append(positions[identifier])
    return min(indexes)


def failure_message(
    function_name: str, stream_arn: str, shard_id: str, records: list[dict[str, Any]], invocations: int
) -> dict[str, Any]:
    """The record Lambda sends to an on-failure destination for a stream batch."""
    first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": invocations,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": first["SequenceNumber"],
            "endSequenceNumber": last["SequenceNumber"],
            "approximateArrivalOfFirstRecord": _arrival(first),
            "approximateArrivalOfLastRecord": _arrival(last),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
    }


def _arrival(image: dict[str, Any]) -> str:
    moment = datetime.fromtimestamp(image.get("ApproximateCreationDateTime", 0), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
