"""History rows in the single table: written by the stream processor, read month by month for reports."""

import heapq
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple

from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from dal.entities import (
    AppliedRecordItem,
    CounterItem,
    HistoryItem,
    MembershipItem,
    applied_sk,
    counter_pk,
    counter_shard,
    history_month_sk,
    history_shard,
    history_sk,
    month_pk,
    month_sk_bound,
    month_sk_parts,
    shared_connection,
    user_pk,
)
from dal.repository import LOST_ANSWER_RESENDS, record_from_image
from dal.transient import busy_when_transient, is_transient
from models.domain import CountDeltas, HistoryRow, MembershipRecord, Operation, Reason
from shared.clock import from_stored, to_stored

APPLIED_MARK_SECONDS = 2 * 86_400  # past the stream's 24 hours of retention
RECORDS_PER_TRANSACTION = 25  # each writes a row or two and its mark: well within 100 items
TRANSACT_ITEMS = 100  # DynamoDB's limit per transaction


class AppliedChange(NamedTuple):
    """What one stream record of a membership item changes: its history rows and count changes."""

    event_id: str
    user_id: int
    rows: list[HistoryRow]
    deltas: CountDeltas


@busy_when_transient
class DynamoHistoryStore:
    """`shards`: how many month-index partitions new rows are spread over; `read_shards`: how many a
    month is read from (at least every count rows were ever written with: docs/data-model.md)."""

    def __init__(self, shards: int, read_shards: int) -> None:
        self._shards = shards
        self._read_shards = max(shards, read_shards)
        self._reader = ThreadPoolExecutor(max_workers=min(self._read_shards, 16), thread_name_prefix="shard")
        self._writer = ThreadPoolExecutor(max_workers=8, thread_name_prefix="apply")

    def apply(self, changes: Sequence[AppliedChange]) -> int:
        """The records' rows and count changes, several records to a transaction, several transactions
        at once; how many rows were written. A record applied before (its mark is there) changes
        nothing: a group holding one is applied again without the records whose marks a consistent
        read finds, so a batch delivered again costs a read and a transaction a group, not one a record."""
        return sum(self._writer.map(self._apply_group, _groups(changes)))

    def _apply_group(self, group: list[AppliedChange]) -> int:
        try:
            return self._apply(group)
        except AppliedBefore:
            if len(group) == 1:
                return 0
            unapplied = _unapplied(group)
            if len(unapplied) < len(group):  # the group shrank: this ends
                return self._apply_group(unapplied) if unapplied else 0
            # A mark failed its condition yet no read shows it: record by record, as it cannot be told
            return sum(self._apply_group([change]) for change in group)

    def _apply(self, group: list[AppliedChange]) -> int:
        token = str(uuid.uuid4())
        for attempt in range(LOST_ANSWER_RESENDS + 1):
            try:
                with TransactWrite(connection=shared_connection(), client_request_token=token) as tx:
                    for row in dict.fromkeys(row for change in group for row in change.rows):
                        tx.save(history_item(row, self._shards))
                    for update in _counter_updates(group):
                        tx.update(update[0], update[1])
                    for change in group:
                        mark = AppliedRecordItem(
                            user_pk(change.user_id), applied_sk(change.event_id), ttl=_mark_expiry()
                        )
                        tx.save(mark, condition=AppliedRecordItem.pk.does_not_exist())
                return sum(len(dict.fromkeys(change.rows)) for change in group)
            except TransactWriteError as error:
                reasons = [reason.code if reason else None for reason in error.cancellation_reasons]
                if "ConditionalCheckFailed" in reasons:
                    raise AppliedBefore from error  # a record applied by an earlier delivery
                if is_transient(error) and attempt < LOST_ANSWER_RESENDS:
                    continue  # sent again with its token: if it had committed, it is not applied twice
                raise
        raise AssertionError("unreachable")

    def user_until(self, user_id: int, end: str) -> Iterator[HistoryRow]:
        """Every row of one user before `end` (a stored timestamp), silent ones included, in time order."""
        items = HistoryItem.query(user_pk(user_id), HistoryItem.sk.between("HIST#", f"HIST#{end}"))
        return (_row(item) for item in items)

    def all_users_month(
        self, month: str, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[HistoryRow | MembershipRecord]:
        """A month of every user from the month index, in report order (time, user, slug): its history
        rows, and the memberships expiring in it that DynamoDB's TTL has not deleted yet; only those at
        or after `since` and before `until` when given (a slice of the month). One Query per shard,
        every shard's first page asked for at once and each next page while the one before is merged."""
        lower = None if since is None else month_sk_bound(to_stored(since))
        upper = None if until is None else month_sk_bound(to_stored(until))
        shards = [
            _prefetched(self._reader, _month_request(month, shard, lower, upper))
            for shard in range(self._read_shards)
        ]
        return (entry for _, entry in heapq.merge(*shards, key=itemgetter(0)))


def _unapplied(group: list[AppliedChange]) -> list[AppliedChange]:
    """The group's records without their applied mark: one consistent BatchGetItem of the marks (a
    group's 25 keys are within its 100)."""
    keys = [(user_pk(change.user_id), applied_sk(change.event_id)) for change in group]
    items = AppliedRecordItem.batch_get(keys, consistent_read=True, attributes_to_get=["pk", "sk"])
    marked = {(item.pk, item.sk) for item in items}
    return [change for change, key in zip(group, keys, strict=True) if key not in marked]


def _counter_updates(group: list[AppliedChange]) -> list[tuple[CounterItem, list[Any]]]:
    """One update per segment generation the group changes, of one counter shard: the shard of the
    group's first user (a count is the sum of its shards, so any will do). A burst of changes to one
    segment, an import's, takes one counter write a transaction of up to 25 records, not one a user."""
    deltas: Counter[tuple[str, int, str]] = Counter()
    for change in group:
        deltas.update(change.deltas)
    by_generation: dict[tuple[str, int], list[Any]] = {}
    for (slug, generation, kind), delta in sorted(deltas.items()):
        if delta:
            attribute = CounterItem.explicit if kind == "explicit" else CounterItem.opted_out
            by_generation.setdefault((slug, generation), []).append(attribute.add(delta))
    shard = counter_shard(group[0].user_id)
    return [
        (CounterItem(counter_pk(slug, generation, shard), CounterItem.SK), actions)
        for (slug, generation), actions in by_generation.items()
    ]


def _groups(changes: Sequence[AppliedChange]) -> list[list[AppliedChange]]:
    """The records in groups of at most RECORDS_PER_TRANSACTION, each within DynamoDB's 100 items a
    transaction, and none writing one history row twice (a transaction names an item once)."""
    groups: list[list[AppliedChange]] = []
    keys: set[tuple[int, datetime, str, Operation]] = set()
    items = 0
    for change in changes:
        own = {(row.user_id, row.at, row.slug, row.operation) for row in change.rows}
        size = len(own) + 1 + len({(slug, generation) for slug, generation, _ in change.deltas})  # at most
        if (
            not groups
            or len(groups[-1]) >= RECORDS_PER_TRANSACTION
            or items + size > TRANSACT_ITEMS
            or keys & own
        ):
            groups.append([])
            keys, items = set(), 0
        groups[-1].append(change)
        keys |= own
        items += size
    return groups


class AppliedBefore(Exception):
    """A record of the transaction was applied by an earlier delivery."""


def _mark_expiry() -> int:
    return int(time.time()) + APPLIED_MARK_SECONDS


Entry = tuple[str, HistoryRow | MembershipRecord]  # (month-index sort key, what it is)
PAGE_ITEMS = 1_000  # per Query: a worker holds two pages a shard (the one merged, the next one read)
# What a month's entries are made of: a history row is its sort key (time, user, slug, operation) and
# reason; an expiring membership, its sort key and its state. Fewer attributes parse faster.
_ENTRY_ATTRIBUTES = {
    "#entity": "entity", "#sk": "gsi2sk", "#reason": "reason", "#generation": "generation",
    "#state": "state", "#revision": "revision", "#added": "added_at", "#expires": "expires_at",
    "#change_op": "change_op", "#change_reason": "change_reason", "#change_at": "change_at",
    "#change_silent": "change_silent",
}  # fmt: skip


def _month_request(month: str, shard: int, lower: str | None, upper: str | None) -> dict[str, Any]:
    """One shard of a month (between two sort-key bounds, upper excluded), raw: history rows and
    expiring memberships are different items, which a pynamodb query (bound to one model) could not
    both read."""
    condition, values = "gsi2pk = :pk", {":pk": {"S": month_pk(month, shard)}}
    if lower is not None and upper is not None:
        condition += " AND #sk BETWEEN :lower AND :upper"  # no key equals a bound (month_sk_bound)
    elif lower is not None:
        condition += " AND #sk >= :lower"
    elif upper is not None:
        condition += " AND #sk < :upper"
    values |= {f":{name}": {"S": bound} for name, bound in (("lower", lower), ("upper", upper)) if bound}
    return {
        "TableName": HistoryItem.Meta.table_name,
        "IndexName": "gsi2",
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": values,
        "ExpressionAttributeNames": _ENTRY_ATTRIBUTES,
        "ProjectionExpression": ", ".join(_ENTRY_ATTRIBUTES),
        "Limit": PAGE_ITEMS,
    }


def _page(request: dict[str, Any], start: dict[str, Any] | None) -> tuple[list[Entry], dict[str, Any] | None]:
    """One page of a shard, made into entries where it was read (the raw items are dropped at once)."""
    page = shared_connection().client.query(**request, **({"ExclusiveStartKey": start} if start else {}))
    return [(item["gsi2sk"]["S"], _month_entry(item)) for item in page["Items"]], page.get("LastEvaluatedKey")


def _prefetched(reader: ThreadPoolExecutor, request: dict[str, Any]) -> Iterator[Entry]:
    """A shard's entries in order. Its first page is asked for now, in the background (a report waits
    for about one Query round trip, not one per shard), and each next page while the one before is
    merged, so the merge waits on DynamoDB only when it outruns it."""
    return _pages(reader, request, reader.submit(_page, request, None))


def _pages(
    reader: ThreadPoolExecutor, request: dict[str, Any], pending: "Future[tuple[list[Entry], Any]] | None"
) -> Iterator[Entry]:
    while pending is not None:
        entries, last = pending.result()
        pending = None if last is None else reader.submit(_page, request, last)
        yield from entries


def _month_entry(item: dict[str, Any]) -> HistoryRow | MembershipRecord:
    at, user_id, slug, operation = month_sk_parts(item["gsi2sk"]["S"])
    if item["entity"]["S"] == MembershipItem.ENTITY:
        return record_from_image({**item, "user_id": {"N": str(user_id)}, "slug": {"S": slug}})
    assert operation is not None, item
    return HistoryRow(from_stored(at), user_id, slug, Operation(operation), Reason(item["reason"]["S"]))


def history_item(row: HistoryRow, shards: int) -> HistoryItem:
    """A history row's item; in the month index unless it is silent."""
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
        item.gsi2sk = history_month_sk(at, row.user_id, row.slug, row.operation.value)
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
