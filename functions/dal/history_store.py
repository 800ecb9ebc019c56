"""History rows in the single table: written by the stream processor, read month by month for reports."""

import heapq
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
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

    def user_month(self, user_id: int, month: str) -> Iterator[HistoryRow]:
        """One user's rows of a month, in time order: a Query of the user's partition."""
        items = HistoryItem.query(user_pk(user_id), HistoryItem.sk.between(f"HIST#{month}", f"HIST#{month}~"))
        return (_row(item) for item in items)

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
        return heapq.merge(*_started_together(shards))

    def expiring_in_month(self, month: str) -> Iterator[MembershipRecord]:
        """Memberships whose expiry falls in the month and that DynamoDB has not deleted yet."""
        shards = [
            (membership_record(item) for item in MembershipItem.expiries.query(expiry_month_pk(month, shard)))
            for shard in range(MEMBER_SHARDS)
        ]
        return heapq.merge(
            *_started_together(shards), key=lambda record: (record.expires_at, record.user_id, record.slug)
        )


def _started_together(shards: Sequence[Iterator[T]]) -> list[Iterator[T]]:
    """Each shard with its first page already read, all shards at once: a report waits for one Query
    round trip instead of one per shard. Later pages are read as the merge reaches them."""
    with ThreadPoolExecutor(max_workers=len(shards)) as pool:
        firsts = list(pool.map(lambda shard: next(shard, _EMPTY), shards))
    return [
        iter(()) if first is _EMPTY else chain([first], shard)
        for first, shard in zip(firsts, shards, strict=True)
    ]


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
