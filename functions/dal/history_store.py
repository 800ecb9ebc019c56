"""History rows in the single table: written by the stream processor, read month by month for reports."""

import heapq
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from pynamodb.models import BatchWrite

from dal.entities import (
    HistoryItem,
    MembershipItem,
    history_shard,
    history_sk,
    month_pk,
    padded_user,
    shared_connection,
    user_pk,
)
from dal.repository import record_from_image
from dal.transient import busy_when_transient
from models.domain import HistoryRow, MembershipRecord, Operation, Reason
from shared.clock import from_stored, to_stored

T = TypeVar("T")
_EMPTY: Any = object()


@busy_when_transient
class DynamoHistoryStore:
    """`shards`: how many month-index partitions new rows are spread over; `read_shards`: how many a
    month is read from (at least every count rows were ever written with: docs/data-model.md)."""

    def __init__(self, shards: int, read_shards: int) -> None:
        self._shards = shards
        self._read_shards = max(shards, read_shards)
        self._reader = ThreadPoolExecutor(max_workers=min(self._read_shards, 16), thread_name_prefix="shard")

    def put_rows(self, rows: Iterable[HistoryRow]) -> int:
        """Idempotent: a row's key is its content, so writing it again changes nothing."""
        written = 0
        with BatchWrite(HistoryItem) as batch:
            for row in dict.fromkeys(rows):  # one request may not name a key twice
                batch.save(_item(row, self._shards))
                written += 1
        return written

    def user_until(self, user_id: int, end: str) -> Iterator[HistoryRow]:
        """Every row of one user before `end` (a stored timestamp), silent ones included, in time order."""
        items = HistoryItem.query(user_pk(user_id), HistoryItem.sk.between("HIST#", f"HIST#{end}"))
        return (_row(item) for item in items)

    def all_users_month(self, month: str) -> Iterator[HistoryRow | MembershipRecord]:
        """A month of every user from the month index, in report order (time, user, slug): its history
        rows, and the memberships expiring in it that DynamoDB's TTL has not deleted yet. One Query
        per shard, every shard's first page asked for at once."""
        shards = [_month_index(month, shard) for shard in range(self._read_shards)]
        merged = heapq.merge(*_read_ahead(self._reader, shards), key=lambda item: item["gsi2sk"]["S"])
        return (_month_entry(item) for item in merged)


def _month_index(month: str, shard: int) -> Iterator[dict[str, Any]]:
    """One shard of a month, raw, page by page: history rows and expiring memberships are different
    items, which a pynamodb query (bound to one model) could not both read."""
    request: dict[str, Any] = {
        "TableName": HistoryItem.Meta.table_name,
        "IndexName": "gsi2",
        "KeyConditionExpression": "gsi2pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": month_pk(month, shard)}},
    }
    client = shared_connection().client
    while True:
        page = client.query(**request)
        yield from page["Items"]
        if "LastEvaluatedKey" not in page:
            return
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _month_entry(item: dict[str, Any]) -> HistoryRow | MembershipRecord:
    if item["entity"]["S"] == MembershipItem.ENTITY:
        return record_from_image(item)
    return _row(HistoryItem.from_raw_data(item))


def _read_ahead(reader: ThreadPoolExecutor, shards: Sequence[Iterator[T]]) -> list[Iterator[T]]:
    """Each shard's first page is asked for now, in the background, for every shard at once: a report
    waits for about one Query round trip, not one per shard. Later pages are read as the merge
    reaches them."""
    return [_after(reader.submit(next, shard, _EMPTY), shard) for shard in shards]


def _after(first: "Future[T]", rest: Iterator[T]) -> Iterator[T]:
    item = first.result()
    if item is not _EMPTY:
        yield item
        yield from rest


def _item(row: HistoryRow, shards: int) -> HistoryItem:
    at = to_stored(row.at)
    item = HistoryItem(
        user_pk(row.user_id),
        history_sk(at, row.slug, row.operation.value),
        user_id=row.user_id,
        slug=row.slug,
        operation=row.operation.value,
        reason=row.reason.value,
        at=at,
    )
    if row.silent:
        item.silent = True  # kept for the user's replay, in no month: no report shows it
    else:
        item.gsi2pk = month_pk(at[:7], history_shard(row.user_id, shards))
        item.gsi2sk = f"{at}#{padded_user(row.user_id)}#{row.slug}#{row.operation.value}"
    return item


def _row(item: HistoryItem) -> HistoryRow:
    return HistoryRow(
        at=from_stored(item.at),
        user_id=int(item.user_id),
        slug=item.slug,
        operation=Operation(item.operation),
        reason=Reason(item.reason),
        silent=bool(item.silent),
    )


def image_record(image: dict[str, Any] | None) -> MembershipRecord | None:
    return None if image is None else record_from_image(image)
