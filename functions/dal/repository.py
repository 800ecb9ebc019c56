"""The only code that talks to DynamoDB: segments, memberships and clean-up pages over the single table."""

import contextlib
import json
import math
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import PutError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from dal.entities import (
    CATALOG,
    CLEANUP_JOBS,
    COUNTER_SHARDS,
    RULE_SK_PREFIX,
    RULESET,
    SWEEP_PK,
    CounterItem,
    GenerationItem,
    GroupItem,
    MembershipItem,
    PercentageSegmentItem,
    RuleChangeItem,
    SegmentItem,
    SweepItem,
    counter_pk,
    expiry_month_sk,
    generation_sk,
    group_pk,
    history_shard,
    job_gsi1sk,
    jobs_gsi1pk,
    member_shard,
    members_gsi1pk,
    membership_sk,
    month_pk,
    padded_user,
    rule_sk,
    rules_gsi1pk,
    segment_pk,
    shared_connection,
    user_pk,
)
from dal.transient import BUSY_CODES, busy_when_transient, is_transient
from models.domain import (
    Change,
    CleanupJob,
    CleanupPhase,
    DeletedGeneration,
    GroupAllocation,
    MemberCounts,
    MembershipRecord,
    MembershipState,
    Operation,
    Reason,
    RuleChange,
    Segment,
    UserUpdate,
)
from models.errors import ConcurrentChange, SegmentExists, ServiceBusy
from shared.clock import from_stored, to_stored

ACTIVE = "active"
DELETED = "deleted"
BATCH_GET_KEYS = 100  # DynamoDB's limit per BatchGetItem
_READER = ThreadPoolExecutor(max_workers=8, thread_name_prefix="rules")
LOST_ANSWER_RESENDS = 2  # a transaction whose answer was lost is sent again, same token, this often
HISTORY_SHARDS = 128
# A job claimed by a worker and not saved since is lost (the workers' timeouts are shorter): the
# sweeper sends it again (docs/background-jobs.md).
JOB_STALE_AFTER = timedelta(minutes=20)


@busy_when_transient
class DynamoSegmentStore:
    def __init__(self, region: str, tombstone_seconds: int, history_shards: int = HISTORY_SHARDS) -> None:
        self._connection = shared_connection()  # bound by dal.entities.bind_table, one client
        self._tombstone = timedelta(seconds=tombstone_seconds)
        self._history_shards = history_shards

    # --- segments -------------------------------------------------------------------------------

    def list_segments(self, limit: int, after_slug: str | None) -> tuple[list[Segment], bool]:
        """A page of the catalog index in slug order, and whether more follow."""
        start = None
        if after_slug is not None:
            keys = {
                "pk": segment_pk(after_slug),
                "sk": SegmentItem.SK,
                "gsi1pk": CATALOG,
                "gsi1sk": after_slug,
            }
            start = {name: {"S": value} for name, value in keys.items()}
        items = SegmentItem.catalog.query(CATALOG, limit=limit + 1, last_evaluated_key=start)
        page = [_segment(item) for item in items]
        return page[:limit], len(page) > limit

    def find_segment(self, slug: str) -> tuple[Segment, bool] | None:
        """The slug's latest generation and whether it is active, read consistently."""
        try:
            item = SegmentItem.get(segment_pk(slug), SegmentItem.SK, consistent_read=True)
        except SegmentItem.DoesNotExist:
            return None
        return _segment(item), item.status == ACTIVE

    def live_segments(self, slugs: Iterable[str], consistent: bool) -> dict[str, Segment]:
        """The live generation of each named slug (deleted or unknown slugs are absent): one
        BatchGetItem of their META items, the source of truth, never an index."""
        keys = [{"pk": {"S": segment_pk(slug)}, "sk": {"S": SegmentItem.SK}} for slug in dict.fromkeys(slugs)]
        found: dict[str, Segment] = {}
        for start in range(0, len(keys), BATCH_GET_KEYS):
            for attributes in self._batch_get(keys[start : start + BATCH_GET_KEYS], consistent):
                item = SegmentItem.from_raw_data(attributes)
                if item.status == ACTIVE:
                    found[item.slug] = _segment(item)
        return found

    def percentage_segments(self, consistent: bool = False) -> list[Segment]:
        """Every live percentage segment's rule: one Query of the RULESET partition."""
        items = PercentageSegmentItem.query(RULESET, consistent_read=consistent)
        return [_percentage_segment(item) for item in items]

    def create_segment(
        self,
        segment: Segment,
        replaces_generation: int | None,
        rule: RuleChange | None = None,
        group: GroupAllocation | None = None,
    ) -> None:
        """A plain segment is one conditional put; a percentage one also logs its rule, joins the
        rule set and, in a group, takes its range in the group item, all in one transaction.

        SegmentExists if the slug is live; ConcurrentChange([]) if the group changed meanwhile.
        """
        item = _segment_item(segment)
        fresh = SegmentItem.pk.does_not_exist()
        if replaces_generation is not None:
            fresh = (SegmentItem.status == DELETED) & (SegmentItem.generation == replaces_generation)
        try:
            if rule is None and group is None:
                self._put(item, fresh)
            else:
                self._transact_segment(segment, fresh, rule, group)
        except ConcurrentChange as change:
            if change.changed_segments:
                raise SegmentExists(segment.slug) from change
            raise

    def save_segment(
        self,
        segment: Segment,
        expected_revision: int,
        rule: RuleChange | None = None,
        group: GroupAllocation | None = None,
        fence: str | None = None,
    ) -> None:
        """Replace an active segment's fields; ConcurrentChange if it (or its group) changed meanwhile.
        A rule change commits under the fence its writer holds (`fence_segment`), and clears it."""
        item = _segment_item(segment)
        current = _is_current(segment.generation, expected_revision)
        if fence is not None:
            current = current & (SegmentItem.fence == fence)
        if rule is None and group is None:
            try:
                self._put(item, current)
            except ConcurrentChange as change:
                raise ConcurrentChange([segment.slug]) from change
            return
        self._transact_segment(segment, current, rule, group)

    def fence_segment(self, segment: Segment, token: str, at: datetime) -> Segment:
        """Announce a rule change or deletion of the generation: user changes read the fence and wait
        until it is decided. ConcurrentChange if the segment changed since it was read."""
        item = SegmentItem(segment_pk(segment.slug), SegmentItem.SK)
        actions: list[Action] = [
            SegmentItem.fence.set(token),
            SegmentItem.fenced_since.set(to_stored(at)),
            SegmentItem.revision.set(segment.revision + 1),
        ]
        condition = _is_current(segment.generation, segment.revision)
        self._transact(lambda tx: tx.update(item, actions, condition=condition), [segment.slug])
        return segment._replace(revision=segment.revision + 1, fenced_since=at)

    def release_fence(self, segment: Segment, token: str) -> None:
        """Give up a fence whose change did not commit: the item is as it was before the fence (its
        revision too), so a change that failed wrote nothing. `segment` is the fenced one."""
        item = SegmentItem(segment_pk(segment.slug), SegmentItem.SK)
        actions: list[Action] = [
            SegmentItem.fence.remove(),
            SegmentItem.fenced_since.remove(),
            SegmentItem.revision.set(segment.revision - 1),
        ]
        with contextlib.suppress(ConcurrentChange):  # taken over already: nothing of ours is left
            self._transact(lambda tx: tx.update(item, actions, condition=SegmentItem.fence == token), [])

    def member_counts(self, segments: Sequence[Segment]) -> list[MemberCounts]:
        """Each segment generation's counts: the sum of its counter shards (BatchGetItem, eventually
        consistent: the counts follow the stream anyway)."""
        keys = [
            {"pk": {"S": counter_pk(segment.slug, segment.generation, shard)}, "sk": {"S": CounterItem.SK}}
            for segment in segments
            for shard in range(COUNTER_SHARDS)
        ]
        batches = [keys[start : start + BATCH_GET_KEYS] for start in range(0, len(keys), BATCH_GET_KEYS)]
        totals: dict[str, tuple[int, int]] = {}
        for items in _READER.map(lambda batch: list(self._batch_get(batch, consistent=False)), batches):
            for item in items:
                counts = CounterItem.from_raw_data(item)
                generation = item["pk"]["S"].rsplit("#", 1)[0]
                explicit, opted_out = totals.get(generation, (0, 0))
                totals[generation] = (explicit + int(counts.explicit), opted_out + int(counts.opted_out))
        return [
            MemberCounts(
                *totals.get(counter_pk(segment.slug, segment.generation, 0).rsplit("#", 1)[0], (0, 0))
            )
            for segment in segments
        ]

    def find_group(self, name: str) -> GroupAllocation:
        """An exclusion group's ranges, read consistently; an empty allocation if it has none yet."""
        try:
            item = GroupItem.get(group_pk(name), GroupItem.SK, consistent_read=True)
        except GroupItem.DoesNotExist:
            return GroupAllocation(name, {})
        ranges = {slug: (int(start), int(end)) for slug, (start, end) in json.loads(item.ranges).items()}
        return GroupAllocation(name, ranges, int(item.revision))

    def segment_rule_changes(self, slug: str) -> list[RuleChange]:
        """One slug's rule changes, every generation, in time order: one Query of its partition."""
        items = RuleChangeItem.query(segment_pk(slug), RuleChangeItem.sk.startswith(RULE_SK_PREFIX))
        return [_rule_change(item) for item in items]

    def rule_changes_of(self, slugs: Iterable[str]) -> list[RuleChange]:
        """The rule changes of the named slugs, in time order: one Query per slug, several at once."""
        changes = [change for found in _READER.map(self.segment_rule_changes, slugs) for change in found]
        return sorted(changes, key=lambda change: (change.at, change.slug, change.generation))

    def slugs_with_rule_changes(self, months: Iterable[str]) -> set[str]:
        """The slugs whose rule changed in any of the months (YYYY-MM): one Query of each month's
        gsi1 partition, several at once (a report of a month long past asks for every month since)."""

        def of_month(month: str) -> set[str]:
            return {item.slug for item in RuleChangeItem.rules.query(rules_gsi1pk(month))}

        return set().union(*_READER.map(of_month, months))

    def delete_segment(
        self,
        segment: Segment,
        deleted_at: datetime,
        rule: RuleChange | None = None,
        group: GroupAllocation | None = None,
        fence: str | None = None,
    ) -> None:
        """Mark the generation deleted and record it for clean-up, in one transaction (with the rule's
        end, its leaving the rule set and, in a group, the freed range)."""
        at = to_stored(deleted_at)
        generation = GenerationItem(
            segment_pk(segment.slug),
            generation_sk(segment.generation),
            slug=segment.slug,
            generation=segment.generation,
            deleted_at=at,
            exclusion_group=segment.exclusion_group,
            member_shards=segment.member_shards,
            cleanup="pending",
            phase=CleanupPhase.WALK.value,
        )
        generation.gsi1pk, generation.gsi1sk = _cleanup_job_key(
            _deleted_generation(generation), deleted_at + JOB_STALE_AFTER
        )
        tombstone = _segment_item(segment)
        tombstone.status = DELETED
        tombstone.deleted_at = at
        tombstone.updated_at = at
        tombstone.revision = segment.revision + 1
        tombstone.gsi1pk = None
        tombstone.gsi1sk = None
        current = _is_current(segment.generation, segment.revision)
        if fence is not None:
            current = current & (SegmentItem.fence == fence)

        def write(tx: TransactWrite) -> None:
            tx.save(tombstone, condition=current)
            tx.save(generation, condition=GenerationItem.pk.does_not_exist())
            if segment.is_percentage:
                tx.delete(PercentageSegmentItem(RULESET, segment.slug))
            self._rule_and_group(tx, rule, group)

        self._transact(write, segment_slugs=[segment.slug])

    # --- memberships ----------------------------------------------------------------------------

    def user_records(self, user_id: int, consistent: bool = False) -> list[MembershipRecord]:
        """Every membership item of a user: one Query of the user's partition.

        The service's hottest call, so it asks the shared botocore client directly and turns the raw
        items into records: pynamodb's expression building and Model objects were a third of a warm GET.
        """
        request: dict[str, Any] = {
            "TableName": MembershipItem.Meta.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {
                ":pk": {"S": user_pk(user_id)},
                ":prefix": {"S": membership_sk("")},
            },
            "ConsistentRead": consistent,
        }
        records: list[MembershipRecord] = []
        while True:
            page = self._connection.client.query(**request)
            records.extend(_record_from_attributes(attributes) for attributes in page["Items"])
            if "LastEvaluatedKey" not in page:
                return records
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def apply_user_update(self, update: UserUpdate, token: str) -> None:
        """One TransactWriteItems of the user's own items: the membership puts, then the guards.

        It carries `token` (ClientRequestToken): a commit whose answer was lost is sent again as is,
        and DynamoDB answers it without applying it twice (for 10 minutes)."""
        shards = {segment.slug: segment.member_shards for segment in update.segments}

        def write(tx: TransactWrite) -> None:
            for change in update.writes:
                item = self.membership_item(change.record, shards[change.record.slug])
                tx.save(item, condition=at_revision(change.expected_revision))
            for guard in update.guards:
                tx.condition_check(
                    MembershipItem,
                    user_pk(guard.user_id),
                    membership_sk(guard.slug),
                    condition=at_revision(guard.expected_revision),
                )

        self._transact(write, segment_slugs=[], token=token)

    # --- clean-up of deleted generations --------------------------------------------------------

    def deleted_generation(self, slug: str, generation: int) -> DeletedGeneration | None:
        try:
            item = GenerationItem.get(segment_pk(slug), generation_sk(generation), consistent_read=True)
        except GenerationItem.DoesNotExist:
            return None
        return _deleted_generation(item)

    def members_page(
        self, slug: str, generation: int, shard: int, cursor: str | None, limit: int
    ) -> tuple[list[MembershipRecord], str | None]:
        """One page of a generation's members and opt-outs in one shard of the members index."""
        start = json.loads(cursor) if cursor else None
        results = MembershipItem.members.query(
            members_gsi1pk(slug, generation, shard), limit=limit, last_evaluated_key=start
        )
        records = [membership_record(item) for item in results]
        last = results.last_evaluated_key
        return records, json.dumps(last, sort_keys=True) if last else None

    def end_membership(self, record: MembershipRecord, ended: MembershipRecord) -> bool:
        """Replace a member with its tombstone if it is still the record read; False if it moved on."""
        try:
            self.membership_item(ended).save(condition=at_revision(record.revision))
        except PutError as error:
            if _is_condition_failure(error):
                return False
            _raise_if_busy(error)
            raise
        return True

    def expiring_members(self, start: datetime, end: datetime) -> Iterator[MembershipRecord]:
        """Memberships expiring in [start, end), from the month index (every shard of each month the
        window touches); history rows in the same partitions are filtered out by DynamoDB."""
        for month in _months(start, end):
            for shard in range(self._history_shards):
                request: dict[str, Any] = {
                    "TableName": MembershipItem.Meta.table_name,
                    "IndexName": "gsi2",
                    "KeyConditionExpression": "gsi2pk = :pk AND gsi2sk BETWEEN :start AND :end",
                    "FilterExpression": "entity = :membership",
                    "ExpressionAttributeValues": {
                        ":pk": {"S": month_pk(month, shard)},
                        ":start": {"S": to_stored(start)},
                        ":end": {"S": to_stored(end)},
                        ":membership": {"S": MembershipItem.ENTITY},
                    },
                }
                while True:
                    page = self._connection.client.query(**request)
                    yield from (_record_from_attributes(item) for item in page["Items"])
                    if "LastEvaluatedKey" not in page:
                        break
                    request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def swept_until(self) -> datetime | None:
        try:
            item = SweepItem.get(SWEEP_PK, SweepItem.EXPIRIES, consistent_read=True)
        except SweepItem.DoesNotExist:
            return None
        return from_stored(item.until)

    def save_swept_until(self, until: datetime) -> None:
        SweepItem(SWEEP_PK, SweepItem.EXPIRIES, until=to_stored(until)).save()

    def drop_opt_out(self, record: MembershipRecord) -> None:
        item = MembershipItem(user_pk(record.user_id), membership_sk(record.slug))
        try:
            item.delete(condition=at_revision(record.revision))
        except Exception as error:  # a newer write replaced it: nothing left to clean
            if not _is_condition_failure(error):
                _raise_if_busy(error)
                raise

    def cleanup_job(self, slug: str, generation: int) -> CleanupJob | None:
        """A deleted generation's clean-up, read consistently."""
        try:
            item = GenerationItem.get(segment_pk(slug), generation_sk(generation), consistent_read=True)
        except GenerationItem.DoesNotExist:
            return None
        return _cleanup_job(item)

    def save_cleanup(self, job: CleanupJob, due_at: datetime | None) -> None:
        """Where the clean-up stands; until done it stays in the jobs index, due at `due_at`."""
        done = job.phase is CleanupPhase.DONE
        self._update_job(
            GenerationItem(segment_pk(job.generation.slug), generation_sk(job.generation.generation)),
            [
                GenerationItem.phase.set(job.phase.value),
                GenerationItem.next_shard.set(job.shard),
                GenerationItem.removed.set(job.removed),
                GenerationItem.cleanup.set("done" if done else "pending"),
                GenerationItem.cursor.set(job.cursor) if job.cursor else GenerationItem.cursor.remove(),
            ],
            None if done or due_at is None else _cleanup_job_key(job.generation, due_at),
        )

    def fail_cleanup(self, slug: str, generation: int) -> None:
        """Its message goes to the dead-letter queue: out of the sweeper's sight until redriven."""
        item = GenerationItem(segment_pk(slug), generation_sk(generation))
        self._update_job(item, [GenerationItem.cleanup.set("failed")], None)

    def _update_job(self, item: Any, actions: list[Action], job_key: tuple[str, str] | None) -> None:
        model = type(item)
        if job_key is None:
            actions += [model.gsi1pk.remove(), model.gsi1sk.remove()]
        else:
            actions += [model.gsi1pk.set(job_key[0]), model.gsi1sk.set(job_key[1])]
        try:
            item.update(actions=actions, condition=model.pk.exists())
        except UpdateError as error:
            _raise_if_busy(error)
            raise

    # --- plumbing -------------------------------------------------------------------------------

    def _put(self, item: SegmentItem, condition: Condition) -> None:
        """One item, written as a transaction of one: it carries a ClientRequestToken, so a write whose
        answer was lost is sent again without a doubt (a plain PutItem sent again would fail its own
        condition and answer 409). Segment writes are an analyst's, few: twice the units is cheap."""
        self._transact(lambda tx: tx.save(item, condition=condition), [item.slug])

    def _transact_segment(
        self, segment: Segment, condition: Condition, rule: RuleChange | None, group: GroupAllocation | None
    ) -> None:
        """The segment first, so a failure of its condition names the slug (the others do not); its
        place in the rule set follows whether it holds a rule."""

        def write(tx: TransactWrite) -> None:
            tx.save(_segment_item(segment), condition=condition)
            if segment.is_percentage:
                tx.save(_percentage_segment_item(segment))
            else:
                tx.delete(PercentageSegmentItem(RULESET, segment.slug))
            self._rule_and_group(tx, rule, group)

        self._transact(write, segment_slugs=[segment.slug])

    def _batch_get(self, keys: list[dict[str, Any]], consistent: bool) -> Iterator[dict[str, Any]]:
        table = SegmentItem.Meta.table_name
        request: dict[str, Any] = {table: {"Keys": keys, "ConsistentRead": consistent}}
        while request:
            answer = self._connection.client.batch_get_item(RequestItems=request)
            yield from answer["Responses"].get(table, [])
            request = answer.get("UnprocessedKeys") or {}

    def _rule_and_group(
        self, tx: TransactWrite, rule: RuleChange | None, group: GroupAllocation | None
    ) -> None:
        if rule is not None:
            tx.save(_rule_item(rule), condition=RuleChangeItem.pk.does_not_exist())
        if group is not None:
            # The group item is the lock: only the writer that read its previous revision commits.
            previous = group.revision - 1
            unchanged = GroupItem.pk.does_not_exist() if previous == 0 else GroupItem.revision == previous
            tx.save(_group_item(group), condition=unchanged)

    def membership_item(self, record: MembershipRecord, member_shards: int | None = None) -> MembershipItem:
        """The item of a record; members and opt-outs are in the generation's members index shards."""
        item = MembershipItem(
            user_pk(record.user_id),
            membership_sk(record.slug),
            user_id=record.user_id,
            slug=record.slug,
            generation=record.generation,
            state=record.state.value,
            revision=record.revision,
            added_at=_stored_or_none(record.added_at),
            expires_at=_stored_or_none(record.expires_at),
        )
        if record.change is not None:
            item.change_op = record.change.operation.value
            item.change_reason = record.change.reason.value
            item.change_at = to_stored(record.change.at)
            item.change_silent = record.change.silent or None
        if record.state is not MembershipState.REMOVED:
            assert member_shards is not None, "a member or opt-out needs its generation's shard count"
            shard = member_shard(record.user_id, member_shards)
            item.gsi1pk = members_gsi1pk(record.slug, record.generation, shard)
            item.gsi1sk = padded_user(record.user_id)
        if record.state is MembershipState.MEMBER and record.expires_at is not None:
            item.ttl = math.ceil(record.expires_at.timestamp())
            shard = history_shard(record.user_id, self._history_shards)
            item.gsi2pk = month_pk(f"{record.expires_at:%Y-%m}", shard)
            item.gsi2sk = expiry_month_sk(to_stored(record.expires_at), record.user_id, record.slug)
        if record.state is MembershipState.REMOVED and record.change is not None:
            item.ttl = math.ceil((record.change.at + self._tombstone).timestamp())
        return item

    def _transact(self, write: Any, segment_slugs: list[str], token: str | None = None) -> None:
        transact(self._connection, write, segment_slugs, token)


def transact(connection: Any, write: Any, segment_slugs: list[str], token: str | None = None) -> None:
    """One TransactWriteItems with a ClientRequestToken. A commit whose answer was lost (a timeout,
    a reset connection) is sent again, the same token and all: DynamoDB answers it without applying
    it twice (for 10 minutes), so the caller learns what happened instead of guessing. A failed
    condition or a conflict is ConcurrentChange, naming the `segment_slugs` (the first items) that
    failed."""
    token = token or str(uuid.uuid4())
    for attempt in range(LOST_ANSWER_RESENDS + 1):
        try:
            with TransactWrite(connection=connection, client_request_token=token) as tx:
                write(tx)
            return
        except TransactWriteError as error:
            reasons = [reason.code if reason else None for reason in error.cancellation_reasons]
            if "ConditionalCheckFailed" in reasons:
                failed = [slug for slug, code in zip(segment_slugs, reasons, strict=False) if code]
                raise ConcurrentChange([s for s in failed if s]) from error
            if (
                "TransactionConflict" in reasons
                # getattr: pynamodb's property fails on a timeout, whose cause has no response
                or getattr(error, "cause_response_code", None) == "TransactionInProgressException"
            ):
                raise ConcurrentChange([]) from error
            if is_transient(error) and attempt < LOST_ANSWER_RESENDS:
                continue
            _raise_if_busy(error)
            raise


def _months(start: datetime, end: datetime) -> Iterator[str]:
    """YYYY-MM months from start's to end's."""
    year, month = start.year, start.month
    while (year, month) <= (end.year, end.month):
        yield f"{year:04d}-{month:02d}"
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def _is_current(generation: int, revision: int) -> Condition:
    return (
        (SegmentItem.status == ACTIVE)
        & (SegmentItem.generation == generation)
        & (SegmentItem.revision == revision)
    )


def at_revision(revision: int | None) -> Condition:
    if revision is None:
        return MembershipItem.pk.does_not_exist()
    return MembershipItem.revision == revision


def _is_condition_failure(error: Exception) -> bool:
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


def _raise_if_busy(error: Exception) -> None:
    code = getattr(error, "cause_response_code", None)
    if code in BUSY_CODES:
        raise ServiceBusy("DynamoDB is throttling requests; try again shortly", retry_after=1) from error


def _stored_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else to_stored(moment)


def _time_or_none(text: str | None) -> datetime | None:
    return None if text is None else from_stored(text)


LEGACY_MEMBER_SHARDS = 8  # generations created before the count was stored on them


def _segment_item(segment: Segment) -> SegmentItem:
    return SegmentItem(
        segment_pk(segment.slug),
        SegmentItem.SK,
        gsi1pk=CATALOG,
        gsi1sk=segment.slug,
        slug=segment.slug,
        generation=segment.generation,
        revision=segment.revision,
        status=ACTIVE,
        description=segment.description,
        auto_percent=segment.auto_percent,
        exclusion_group=segment.exclusion_group,
        bucket_start=segment.bucket_start,
        bucket_end=segment.bucket_end,
        created_at=to_stored(segment.created_at),
        updated_at=to_stored(segment.updated_at),
        rule_since=_stored_or_none(segment.rule_since),
        member_shards=segment.member_shards,
    )


def _segment(item: SegmentItem) -> Segment:
    return Segment(
        slug=item.slug,
        generation=int(item.generation),
        revision=int(item.revision),
        description=item.description or "",
        created_at=from_stored(item.created_at),
        updated_at=from_stored(item.updated_at),
        auto_percent=_int_or_none(item.auto_percent),
        exclusion_group=item.exclusion_group,
        bucket_start=_int_or_none(item.bucket_start),
        bucket_end=_int_or_none(item.bucket_end),
        rule_since=_time_or_none(item.rule_since),
        fenced_since=_time_or_none(item.fenced_since) if item.fence else None,
        member_shards=int(item.member_shards or LEGACY_MEMBER_SHARDS),
    )


def _percentage_segment_item(segment: Segment) -> PercentageSegmentItem:
    return PercentageSegmentItem(
        RULESET,
        segment.slug,
        slug=segment.slug,
        generation=segment.generation,
        revision=segment.revision,
        auto_percent=segment.auto_percent,
        exclusion_group=segment.exclusion_group,
        bucket_start=segment.bucket_start,
        bucket_end=segment.bucket_end,
        created_at=to_stored(segment.created_at),
        updated_at=to_stored(segment.updated_at),
        rule_since=_stored_or_none(segment.rule_since),
        member_shards=segment.member_shards,
    )


def _percentage_segment(item: PercentageSegmentItem) -> Segment:
    """What reads need of a percentage segment: its generation and rule (no description)."""
    return Segment(
        slug=item.slug,
        generation=int(item.generation),
        revision=int(item.revision),
        description="",
        created_at=from_stored(item.created_at),
        updated_at=from_stored(item.updated_at),
        auto_percent=_int_or_none(item.auto_percent),
        exclusion_group=item.exclusion_group,
        bucket_start=_int_or_none(item.bucket_start),
        bucket_end=_int_or_none(item.bucket_end),
        rule_since=_time_or_none(item.rule_since),
        member_shards=int(item.member_shards or LEGACY_MEMBER_SHARDS),
    )


def _int_or_none(number: float | None) -> int | None:
    return None if number is None else int(number)


def membership_record(item: MembershipItem) -> MembershipRecord:
    change = None
    if item.change_op and item.change_reason and item.change_at:
        change = Change(
            Operation(item.change_op), Reason(item.change_reason), from_stored(item.change_at),
            bool(item.change_silent),
        )  # fmt: skip
    return MembershipRecord(
        user_id=int(item.user_id),
        slug=item.slug,
        generation=int(item.generation),
        state=MembershipState(item.state),
        revision=int(item.revision),
        added_at=_time_or_none(item.added_at),
        expires_at=_time_or_none(item.expires_at),
        change=change,
    )


def _rule_item(rule: RuleChange) -> RuleChangeItem:
    at = to_stored(rule.at)
    return RuleChangeItem(
        segment_pk(rule.slug),
        rule_sk(at, rule.generation),
        gsi1pk=rules_gsi1pk(at[:7]),
        gsi1sk=f"{at}#{rule.slug}",
        slug=rule.slug,
        generation=rule.generation,
        seed=rule.seed,
        bucket_start=rule.bucket_start,
        bucket_end=rule.bucket_end,
        at=at,
        deleted=rule.deleted,
    )


def _rule_change(item: RuleChangeItem) -> RuleChange:
    return RuleChange(
        slug=item.slug,
        generation=int(item.generation),
        seed=item.seed,
        bucket_start=None if item.bucket_start is None else int(item.bucket_start),
        bucket_end=None if item.bucket_end is None else int(item.bucket_end),
        at=from_stored(item.at),
        deleted=bool(item.deleted),
    )


def _group_item(group: GroupAllocation) -> GroupItem:
    ranges = {slug: list(bucket_range) for slug, bucket_range in sorted(group.ranges.items())}
    return GroupItem(
        group_pk(group.name),
        GroupItem.SK,
        name=group.name,
        revision=group.revision,
        ranges=json.dumps(ranges, separators=(",", ":")),
    )


def _record_from_attributes(attributes: dict[str, dict[str, str]]) -> MembershipRecord:
    """What membership_record gives for the same item, read from DynamoDB JSON without a Model (the
    read path's every record: enums by dict, no closures)."""
    get = attributes.get
    change = None
    change_op, change_reason, change_at = (
        _text(get("change_op")),
        _text(get("change_reason")),
        _text(get("change_at")),
    )
    if change_op and change_reason and change_at:
        silent = attributes.get("change_silent", {}).get("BOOL") is True
        change = Change(_OPERATIONS[change_op], _REASONS[change_reason], from_stored(change_at), silent)
    return MembershipRecord(
        int(attributes["user_id"]["N"]),
        attributes["slug"]["S"],
        int(attributes["generation"]["N"]),
        _STATES[attributes["state"]["S"]],
        int(attributes["revision"]["N"]),
        _time_or_none(_text(get("added_at"))),
        _time_or_none(_text(get("expires_at"))),
        change,
    )


def _text(value: dict[str, str] | None) -> str | None:
    return None if value is None else value.get("S")


_STATES = {state.value: state for state in MembershipState}
_OPERATIONS = {operation.value: operation for operation in Operation}
_REASONS = {reason.value: reason for reason in Reason}


def _deleted_generation(item: GenerationItem) -> DeletedGeneration:
    return DeletedGeneration(
        slug=item.slug,
        generation=int(item.generation),
        deleted_at=from_stored(item.deleted_at),
        exclusion_group=item.exclusion_group,
        member_shards=int(item.member_shards or LEGACY_MEMBER_SHARDS),
    )


def record_from_image(image: dict[str, Any]) -> MembershipRecord:
    """A membership record from a stream image (DynamoDB JSON)."""
    return membership_record(MembershipItem.from_raw_data(image))


def cleanup_job_of(image: dict[str, Any]) -> CleanupJob:
    """A deleted generation's clean-up, from a stream image of its item."""
    return _cleanup_job(GenerationItem.from_raw_data(image))


def _cleanup_job(item: GenerationItem) -> CleanupJob:
    return CleanupJob(
        _deleted_generation(item),
        CleanupPhase(item.phase or CleanupPhase.WALK.value) if item.cleanup != "done" else CleanupPhase.DONE,
        int(item.next_shard or 0),
        item.cursor,
        int(item.removed or 0),
    )


def _cleanup_job_key(generation: DeletedGeneration, due_at: datetime) -> tuple[str, str]:
    job = f"{generation.slug}#{generation.generation:010d}"
    return jobs_gsi1pk(CLEANUP_JOBS), job_gsi1sk(to_stored(due_at), job)
