"""The only code that talks to DynamoDB: segments, memberships and clean-up pages over the single table."""

import json
import math
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import PutError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from dal.entities import (
    CATALOG,
    RULE_SK_PREFIX,
    RULES,
    GenerationItem,
    GroupItem,
    MembershipItem,
    RuleChangeItem,
    SegmentItem,
    generation_sk,
    group_pk,
    member_shard,
    members_gsi1pk,
    membership_sk,
    month_pk,
    padded_user,
    rule_sk,
    rules_gsi1sk,
    segment_pk,
    shared_connection,
    user_pk,
)
from dal.transient import BUSY_CODES, busy_when_transient
from models.domain import (
    Change,
    DeletedGeneration,
    GroupAllocation,
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


@busy_when_transient
class DynamoSegmentStore:
    def __init__(self, region: str, tombstone_seconds: int) -> None:
        self._connection = shared_connection()  # bound by dal.entities.bind_table, one client
        self._tombstone = timedelta(seconds=tombstone_seconds)

    # --- segments -------------------------------------------------------------------------------

    def active_segments(self) -> list[Segment]:
        """The whole catalog: one paginated Query of its index partition."""
        return [_segment(item) for item in SegmentItem.catalog.query(CATALOG)]

    def list_segments(self, limit: int, after_slug: str | None) -> tuple[list[Segment], bool]:
        """A page of the catalog in slug order, and whether more follow."""
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

    def create_segment(
        self,
        segment: Segment,
        replaces_generation: int | None,
        rule: RuleChange | None = None,
        group: GroupAllocation | None = None,
    ) -> None:
        """A plain segment is one conditional put; a percentage one also logs its rule and, in a group,
        takes its range in the group item, all in one transaction.

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
                self._transact_segment(item, fresh, rule, group)
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
    ) -> None:
        """Replace an active segment's fields; ConcurrentChange if it (or its group) changed meanwhile."""
        item = _segment_item(segment)
        current = _is_current(segment.generation, expected_revision)
        if rule is None and group is None:
            try:
                self._put(item, current)
            except ConcurrentChange as change:
                raise ConcurrentChange([segment.slug]) from change
            return
        self._transact_segment(item, current, rule, group)

    def find_group(self, name: str) -> GroupAllocation:
        """An exclusion group's ranges, read consistently; an empty allocation if it has none yet."""
        try:
            item = GroupItem.get(group_pk(name), GroupItem.SK, consistent_read=True)
        except GroupItem.DoesNotExist:
            return GroupAllocation(name, {})
        ranges = {slug: (int(start), int(end)) for slug, (start, end) in json.loads(item.ranges).items()}
        return GroupAllocation(name, ranges, int(item.revision))

    def rule_changes(self) -> list[RuleChange]:
        """Every rule change of every segment, in time order: one paginated Query of gsi1 (RULES)."""
        changes = [_rule_change(item) for item in RuleChangeItem.rules.query(RULES)]
        return sorted(changes, key=lambda change: (change.at, change.slug, change.generation))

    def segment_rule_changes(self, slug: str) -> list[RuleChange]:
        """One slug's rule changes, every generation, in time order: one Query of its partition."""
        items = RuleChangeItem.query(segment_pk(slug), RuleChangeItem.sk.startswith(RULE_SK_PREFIX))
        return [_rule_change(item) for item in items]

    def delete_segment(
        self,
        segment: Segment,
        deleted_at: datetime,
        rule: RuleChange | None = None,
        group: GroupAllocation | None = None,
    ) -> None:
        """Mark the generation deleted and record it for clean-up, in one transaction (with the rule's
        end and, in a group, the freed range)."""
        at = to_stored(deleted_at)
        generation = GenerationItem(
            segment_pk(segment.slug),
            generation_sk(segment.generation),
            slug=segment.slug,
            generation=segment.generation,
            deleted_at=at,
            exclusion_group=segment.exclusion_group,
            cleanup="pending",
        )
        tombstone = _segment_item(segment)
        tombstone.status = DELETED
        tombstone.deleted_at = at
        tombstone.updated_at = at
        tombstone.revision = segment.revision + 1
        tombstone.gsi1pk = None
        tombstone.gsi1sk = None

        def write(tx: TransactWrite) -> None:
            tx.save(tombstone, condition=_is_current(segment.generation, segment.revision))
            tx.save(generation, condition=GenerationItem.pk.does_not_exist())
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

    def apply_user_update(self, update: UserUpdate) -> None:
        """One TransactWriteItems: segment checks, then the membership puts and guards."""

        def write(tx: TransactWrite) -> None:
            for segment in update.segments:
                tx.condition_check(
                    SegmentItem,
                    segment_pk(segment.slug),
                    SegmentItem.SK,
                    condition=_is_current(segment.generation, segment.revision),
                )
            for change in update.writes:
                item = self._membership_item(change.record)
                tx.save(item, condition=_at_revision(change.expected_revision))
            for guard in update.guards:
                tx.condition_check(
                    MembershipItem,
                    user_pk(guard.user_id),
                    membership_sk(guard.slug),
                    condition=_at_revision(guard.expected_revision),
                )

        self._transact(write, segment_slugs=[segment.slug for segment in update.segments])

    # --- clean-up of deleted generations --------------------------------------------------------

    def deleted_generation(self, slug: str, generation: int) -> DeletedGeneration | None:
        try:
            item = GenerationItem.get(segment_pk(slug), generation_sk(generation))
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
            self._membership_item(ended).save(condition=_at_revision(record.revision))
        except PutError as error:
            if _is_condition_failure(error):
                return False
            _raise_if_busy(error)
            raise
        return True

    def drop_opt_out(self, record: MembershipRecord) -> None:
        item = MembershipItem(user_pk(record.user_id), membership_sk(record.slug))
        try:
            item.delete(condition=_at_revision(record.revision))
        except Exception as error:  # a newer write replaced it: nothing left to clean
            if not _is_condition_failure(error):
                _raise_if_busy(error)
                raise

    def save_cleanup_progress(
        self, generation: DeletedGeneration, next_shard: int, cursor: str | None, removed: int, done: bool
    ) -> None:
        item = GenerationItem(segment_pk(generation.slug), generation_sk(generation.generation))
        actions: list[Action] = [
            GenerationItem.next_shard.set(next_shard),
            GenerationItem.removed.set(removed),
            GenerationItem.cleanup.set("done" if done else "pending"),
            GenerationItem.cursor.set(cursor) if cursor else GenerationItem.cursor.remove(),
        ]
        try:
            item.update(actions=actions)
        except UpdateError as error:
            _raise_if_busy(error)
            raise

    # --- plumbing -------------------------------------------------------------------------------

    def _put(self, item: SegmentItem, condition: Condition) -> None:
        try:
            item.save(condition=condition)
        except PutError as error:
            if _is_condition_failure(error):
                raise ConcurrentChange([item.slug]) from error
            _raise_if_busy(error)
            raise

    def _transact_segment(
        self, item: SegmentItem, condition: Condition, rule: RuleChange | None, group: GroupAllocation | None
    ) -> None:
        """The segment first, so a failure of its condition names the slug (the others do not)."""

        def write(tx: TransactWrite) -> None:
            tx.save(item, condition=condition)
            self._rule_and_group(tx, rule, group)

        self._transact(write, segment_slugs=[item.slug])

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

    def _membership_item(self, record: MembershipRecord) -> MembershipItem:
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
            item.gsi1pk = members_gsi1pk(record.slug, record.generation, member_shard(record.user_id))
            item.gsi1sk = padded_user(record.user_id)
        if record.state is MembershipState.MEMBER and record.expires_at is not None:
            item.ttl = math.ceil(record.expires_at.timestamp())
            item.gsi2pk = month_pk(f"{record.expires_at:%Y-%m}", member_shard(record.user_id))
            item.gsi2sk = f"{to_stored(record.expires_at)}#{padded_user(record.user_id)}#{record.slug}"
        if record.state is MembershipState.REMOVED and record.change is not None:
            item.ttl = math.ceil((record.change.at + self._tombstone).timestamp())
        return item

    def _transact(self, write: Any, segment_slugs: list[str]) -> None:
        try:
            with TransactWrite(connection=self._connection) as tx:
                write(tx)
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
            _raise_if_busy(error)
            raise


def _is_current(generation: int, revision: int) -> Condition:
    return (
        (SegmentItem.status == ACTIVE)
        & (SegmentItem.generation == generation)
        & (SegmentItem.revision == revision)
    )


def _at_revision(revision: int | None) -> Condition:
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
    )


def _segment(item: SegmentItem) -> Segment:
    return Segment(
        slug=item.slug,
        generation=int(item.generation),
        revision=int(item.revision),
        description=item.description or "",
        created_at=from_stored(item.created_at),
        updated_at=from_stored(item.updated_at),
        auto_percent=None if item.auto_percent is None else int(item.auto_percent),
        exclusion_group=item.exclusion_group,
        bucket_start=None if item.bucket_start is None else int(item.bucket_start),
        bucket_end=None if item.bucket_end is None else int(item.bucket_end),
    )


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
        gsi1pk=RULES,
        gsi1sk=rules_gsi1sk(at, rule.slug),
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
    """What membership_record gives for the same item, read from DynamoDB JSON without a Model."""

    def text(name: str) -> str | None:
        value = attributes.get(name)
        return None if value is None else value.get("S")

    change = None
    change_op, change_reason, change_at = text("change_op"), text("change_reason"), text("change_at")
    if change_op and change_reason and change_at:
        silent = attributes.get("change_silent", {}).get("BOOL") is True
        change = Change(Operation(change_op), Reason(change_reason), from_stored(change_at), silent)
    slug = attributes["slug"]["S"]
    return MembershipRecord(
        user_id=int(attributes["user_id"]["N"]),
        slug=slug,
        generation=int(attributes["generation"]["N"]),
        state=MembershipState(attributes["state"]["S"]),
        revision=int(attributes["revision"]["N"]),
        added_at=_time_or_none(text("added_at")),
        expires_at=_time_or_none(text("expires_at")),
        change=change,
    )


def _deleted_generation(item: GenerationItem) -> DeletedGeneration:
    return DeletedGeneration(
        slug=item.slug,
        generation=int(item.generation),
        deleted_at=from_stored(item.deleted_at),
        exclusion_group=item.exclusion_group,
    )


def record_from_image(image: dict[str, Any]) -> MembershipRecord:
    """A membership record from a stream image (DynamoDB JSON)."""
    return membership_record(MembershipItem.from_raw_data(image))


def cleanup_from_image(image: dict[str, Any]) -> tuple[DeletedGeneration, int, str | None, int]:
    """A deleted generation and where its clean-up stands, from a stream image."""
    item = GenerationItem.from_raw_data(image)
    return _deleted_generation(item), int(item.next_shard or 0), item.cursor, int(item.removed or 0)
