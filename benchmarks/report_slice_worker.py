"""One slice of a fanned-out report in a fresh process, so its peak memory is one worker's own:
`python -m benchmarks.report_slice_worker ROWS` prints {"rows", "seconds", "cpu_seconds", "server_seconds",
"peak_kb", "bytes", "queries", "item_bytes"} as JSON.

The slice is read as the report worker reads it on AWS: every shard of the month index (HistoryShards,
64) Queried through the service's own botocore client, its pages parsed by botocore, merged, made into
report lines and streamed into a temporary object on the S3 endpoint in AWS_ENDPOINT_URL. Only the
DynamoDB server is stood in for: a synthetic month answers each Query, page by page (the service's
Limit, its bounds, its ExclusiveStartKey), from inside botocore's send (its public `before-send`
event), and the CPU time spent making those answers is measured and left out (`server_seconds`). The
worker's own cost is its process's CPU time less that: the machine is shared, and on Lambda a worker
that keeps each shard's next page in flight is bound by its CPU, not by DynamoDB's round trips.
"""

import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from benchmarks.harness import BUCKET
from benchmarks.report_worker import PlainSegments, peak_resident_kb

MONTH = "2023-08"
START = datetime(2023, 8, 1, tzinfo=UTC)
SLICES = 8  # the month is cut in eight; the slice measured is the fourth, bounded on both sides
MEASURED = 3
SHARDS = 64
USERS_A_SHARD = 780  # 49,920 users


class Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


class SyntheticMonthIndex:
    """The month index of a month of `rows` history rows, spread evenly over time and over the shards
    by user (as `user_id % shards` spreads them); row j of shard s is at START + (64 j + s) * step."""

    def __init__(self, rows: int) -> None:
        self.step = (datetime(2023, 9, 1, tzinfo=UTC) - START) / rows
        self.per_shard = rows // SHARDS
        self.seconds = 0.0
        self.queries = 0

    def row(self, shard: int, number: int) -> tuple[str, int, str, str]:
        at = (START + self.step * (number * SHARDS + shard)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        user = SHARDS * (1 + (number * 31) % USERS_A_SHARD) + shard
        return at, user, f"AVITO_SEGMENT_{(number + shard) % 40}", "remove" if number % 3 == 0 else "add"

    def first_at_or_after(self, shard: int, at: str) -> int:
        moment = datetime.fromisoformat(at)
        position = (moment - START) / self.step
        number = min(self.per_shard, max(0, int((position - shard) // SHARDS)))
        while number > 0 and self.row(shard, number - 1)[0] >= at:
            number -= 1
        while number < self.per_shard and self.row(shard, number)[0] < at:
            number += 1
        return number

    def answer(self, request: Any, **_: Any) -> Any:
        """What DynamoDB answers to one Query of the month index, as botocore receives it."""
        from botocore.awsrequest import AWSResponse

        started = time.thread_time()  # this thread's CPU: waits for the GIL are the worker's, not ours
        body = json.loads(request.body)
        values = body["ExpressionAttributeValues"]
        shard = int(values[":pk"]["S"].rsplit("#", 1)[1])
        first = self.first_at_or_after(shard, values[":lower"]["S"]) if ":lower" in values else 0
        end = self.first_at_or_after(shard, values[":upper"]["S"]) if ":upper" in values else self.per_shard
        if "ExclusiveStartKey" in body:
            first = int(body["ExclusiveStartKey"]["number"]["N"]) + 1
        last = min(end, first + int(body["Limit"]))
        items = []
        for number in range(first, last):
            at, user, slug, operation = self.row(shard, number)
            sort_key = f"{at}#{user:019d}#{slug}#{operation}"
            items.append(
                f'{{"entity":{{"S":"HISTORY"}},"gsi2sk":{{"S":"{sort_key}"}},"reason":{{"S":"manual"}}}}'
            )
        more = f',"LastEvaluatedKey":{{"number":{{"N":"{last - 1}"}}}}' if last < end else ""
        page = f'{{"Items":[{",".join(items)}],"Count":{len(items)},"ScannedCount":{len(items)}{more}}}'
        self.queries += 1
        self.seconds += time.thread_time() - started
        return AWSResponse(request.url, 200, {"x-amzn-requestid": "bench"}, Raw(page.encode()))


def item_bytes(index: SyntheticMonthIndex, sample: int = 2_000) -> float:
    """The stored size of the month's history items (as DynamoDB counts it: names and values), which
    is what a Query is billed for, whatever it projects."""
    from benchmarks.call_meter import item_size
    from dal.history_store import history_item
    from models.domain import HistoryRow, Operation, Reason
    from shared.clock import from_stored

    sizes = []
    for number in range(sample):
        at, user, slug, operation = index.row(number % SHARDS, number // SHARDS)
        row = HistoryRow(from_stored(at), user, slug, Operation(operation), Reason.MANUAL)
        sizes.append(item_size(history_item(row, SHARDS).serialize()))
    return sum(sizes) / len(sizes)


def main(rows: int) -> dict[str, float]:
    from dal.entities import shared_connection
    from dal.history_store import DynamoHistoryStore
    from dal.report_storage import S3ReportStorage
    from logic.report_fanout import part_key, plan_slices, slice_rows
    from logic.reports import csv_lines, parse_period

    index = SyntheticMonthIndex(rows * SLICES)
    shared_connection().client.meta.events.register("before-send.dynamodb.Query", index.answer)
    now = datetime(2023, 9, 2, tzinfo=UTC)
    period = parse_period(MONTH, now)
    piece = plan_slices(period, SLICES)[MEASURED]
    storage, source = S3ReportStorage(BUCKET, 900), DynamoHistoryStore(SHARDS, 0)
    started, cpu = time.perf_counter(), time.process_time()
    lines = slice_rows(source, PlainSegments(), period, piece, now)
    written, size = storage.write_part(part_key(MONTH, "bench", MEASURED), csv_lines(lines, header=False))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    assert abs(written - rows) <= SHARDS, (written, rows)  # a slice's share of the month, to a row a shard
    return {
        "rows": written, "seconds": seconds, "cpu_seconds": cpu_seconds, "server_seconds": index.seconds,
        "peak_kb": peak_resident_kb(),
        "bytes": size, "queries": index.queries, "item_bytes": item_bytes(index),
    }  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
