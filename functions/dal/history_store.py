"""History rows in the single table: written by the stream processor, read month by month for reports."""

import heapq
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from pynamodb.models import BatchWrite

from dal.entities import (
    MEMBER_SHARDS,
    HistoryItem,
    MembershipItem,
    expiry_month_pk,
    history_month_pk,
    history_sk,
    member_shard,
    padded_user,
    user_pk,
)
from dal.repository import membership_record, record_from_image
from dal.transient import busy_when_transient
from models.domain import HistoryRow, MembershipRecord, Operation, Reason
from shared.clock import from_stored, to_stored

HISTORY_SHARDS = MEMBER_SHARDS
T = TypeVar("T")
_EMPTY: Any = object()
_READER = ThreadPoolExecutor(max_workers=HISTORY_SHARDS + MEMBER_SHARDS, thread_name_prefix="shard-reader")


@busy_when_transient
class DynamoHistoryStore:
    def put_rows(self, rows: Iterable[HistoryRow]) -> int:
        """Idempotent: a row's key is its content, so writing it again changes nothing."""
        written = 0
        with BatchWrite(HistoryItem) as batch:
            for row in dict.fromkeys(rows):  # one request may not name a key twice
                batch.save(_item(row))
                written += 1
        return written

    def user_until(self, user_id: int, end: str) -> Iterator[HistoryRow]:
        """Every row of one user before `end` (a stored timestamp), in time order."""
        items = HistoryItem.query(user_pk(user_id), HistoryItem.sk.between("HIST#", f"HIST#{end}"))
        return (_row(item) for item in items)

    def all_users_month(self, month: str) -> Iterator[HistoryRow]:
        """Every user's rows of a month, merged in report order from the sharded month index."""
        shards = [
            (_row(item) for item in HistoryItem.months.query(history_month_pk(month, shard)))
            for shard in range(HISTORY_SHARDS)
        ]
        return heapq.merge(*_read_ahead(shards))

    def expiring_in_month(self, month: str) -> Iterator[MembershipRecord]:
        """Memberships whose expiry falls in the month and that DynamoDB has not deleted yet."""
        shards = [
            (membership_record(item) for item in MembershipItem.expiries.query(expiry_month_pk(month, shard)))
            for shard in range(MEMBER_SHARDS)
        ]
        return heapq.merge(
            *_read_ahead(shards), key=lambda record: (record.expires_at, record.user_id, record.slug)
        )


def _read_ahead(shards: Sequence[Iterator[T]]) -> list[Iterator[T]]:
    """Each shard's first page is asked for now, in the background, for every shard at once: a report
    waits for about one Query round trip, not one per shard (the history and expiry shards of a month
    overlap too). Later pages are read as the merge reaches them."""
    return [_after(_READER.submit(next, shard, _EMPTY), shard) for shard in shards]


def _after(first: "Future[T]", rest: Iterator[T]) -> Iterator[T]:
    item = first.result()
    if item is not _EMPTY:
        yield item
        yield from rest


def _item(row: HistoryRow) -> HistoryItem:
    at = to_stored(row.at)
    month = at[:7]
    return HistoryItem(
        user_pk(row.user_id),
        history_sk(at, row.slug, row.operation.value),
        gsi2pk=history_month_pk(month, member_shard(row.user_id)),
        gsi2sk=f"{at}#{padded_user(row.user_id)}#{row.slug}#{row.operation.value}",
        user_id=row.user_id,
        slug=row.slug,
        operation=row.operation.value,
        reason=row.reason.value,
        at=at,
    )


def _row(item: HistoryItem) -> HistoryRow:
    return HistoryRow(
        at=from_stored(item.at),
        user_id=int(item.user_id),
        slug=item.slug,
        operation=Operation(item.operation),
        reason=Reason(item.reason),
    )


def image_record(image: dict[str, Any] | None) -> MembershipRecord | None:
    return None if image is None else record_from_image(image)
