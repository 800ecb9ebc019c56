"""The single table's items. Every entity builds its own keys here; no key string is written elsewhere.

See docs/data-model.md for the access patterns each key and index serves.
"""

import os
from functools import lru_cache

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

CATALOG = "CATALOG"  # gsi1 partition of the live segments, for listing them page by page
RULESET = "RULESET"  # base-table partition of the live percentage segments, read whole by every read


def segment_pk(slug: str) -> str:
    return f"SEGMENT#{slug}"


def user_pk(user_id: int) -> str:
    return f"USER#{user_id}"


def user_of(pk: str) -> int:
    """The user whose partition `pk` (USER#{user_id}) is."""
    return int(pk.removeprefix("USER#"))


def membership_sk(slug: str) -> str:
    return f"SEG#{slug}"


def generation_sk(generation: int) -> str:
    return f"GEN#{generation:010d}"


def group_pk(name: str) -> str:
    return f"GROUP#{name}"


RULE_SK_PREFIX = "RULE#"


def rule_sk(at: str, generation: int) -> str:
    return f"{RULE_SK_PREFIX}{at}#{generation:010d}"


def members_gsi1pk(slug: str, generation: int, shard: int) -> str:
    return f"MEMBERS#{slug}#{generation}#{shard}"


def member_shard(user_id: int, shards: int) -> int:
    """A generation's members are spread over its own `member_shards` index partitions."""
    return user_id % shards


def rules_gsi1pk(month: str) -> str:
    """gsi1: the rule changes of a month (YYYY-MM), for the reports of that month and earlier ones."""
    return f"RULES#{month}"


def history_sk(at: str, slug: str, operation: str) -> str:
    return f"HIST#{at}#{slug}#{operation}"


def history_shard(user_id: int, shards: int) -> int:
    return user_id % shards


def month_pk(month: str, shard: int) -> str:
    """gsi2: a month of every user, sharded by user: its history rows and the memberships expiring in it."""
    return f"MONTH#{month}#{shard}"


def padded_user(user_id: int) -> str:
    """19 digits: user ids sort numerically inside a sort key."""
    return f"{user_id:019d}"


def history_month_sk(at: str, user_id: int, slug: str, operation: str) -> str:
    """gsi2 sort key of a history row: report order (time, user, slug), then the operation."""
    return f"{at}#{padded_user(user_id)}#{slug}#{operation}"


def expiry_month_sk(expires_at: str, user_id: int, slug: str) -> str:
    """gsi2 sort key of an expiring membership: just before the row its expiry makes (a prefix of it)."""
    return f"{expires_at}#{padded_user(user_id)}#{slug}"


def month_sk_bound(at: str) -> str:
    """A bound between two slices of a month (a stored timestamp): every sort key of the month index is
    `{at}#...`, so no key equals a bound, all keys of one instant sort on the same side of it (after
    it when the instant is the bound's), and a row and the expiring membership it duplicates (which
    share their instant, user and slug) are never parted."""
    return at


def month_sk_parts(sort_key: str) -> tuple[str, int, str, str | None]:
    """(stored time, user id, slug, operation) of a month-index sort key; no operation for an expiring
    membership. Slugs hold no '#'."""
    at, user, rest = sort_key.split("#", 2)
    slug, _, operation = rest.partition("#")
    return at, int(user), slug, operation or None


class _TableMeta:
    table_name = os.environ.get("TABLE_NAME", "segments")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


class CatalogIndex(GlobalSecondaryIndex["SegmentItem"]):
    class Meta:
        index_name = "gsi1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


class SegmentItem(Model):
    """pk=SEGMENT#{slug}, sk=META: the source of truth of a slug's latest generation. Listed in the
    catalog (gsi1pk=CATALOG) only while active."""

    class Meta(_TableMeta):
        pass

    ENTITY = "SEGMENT"
    SK = "META"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    entity = UnicodeAttribute(default=ENTITY)
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)
    slug = UnicodeAttribute()
    generation = NumberAttribute()
    revision = NumberAttribute()
    status = UnicodeAttribute()  # active | deleted
    description = UnicodeAttribute(default="")
    auto_percent = NumberAttribute(null=True)
    exclusion_group = UnicodeAttribute(null=True)
    bucket_start = NumberAttribute(null=True)
    bucket_end = NumberAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    deleted_at = UnicodeAttribute(null=True)
    rule_since = UnicodeAttribute(null=True)  # when the current rule (or the generation) took effect
    fence = UnicodeAttribute(null=True)  # the token of a rule change or deletion in progress
    fenced_since = UnicodeAttribute(null=True)
    member_shards = NumberAttribute(null=True)  # absent: 8, the count before it was a setting

    catalog = CatalogIndex()


class PercentageSegmentItem(Model):
    """pk=RULESET, sk={slug}: a live percentage segment's rule, written in the same transaction as
    its segment. Every read needs every rule (a bucket holds users never seen), so the whole set is one
    base-table Query: consistent when asked, never behind an index."""

    class Meta(_TableMeta):
        pass

    ENTITY = "RULESET"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    entity = UnicodeAttribute(default=ENTITY)
    slug = UnicodeAttribute()
    generation = NumberAttribute()
    revision = NumberAttribute()
    description = UnicodeAttribute(default="")
    auto_percent = NumberAttribute(null=True)
    exclusion_group = UnicodeAttribute(null=True)
    bucket_start = NumberAttribute(null=True)
    bucket_end = NumberAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    rule_since = UnicodeAttribute(null=True)
    member_shards = NumberAttribute(null=True)


class JobsIndex(GlobalSecondaryIndex["GenerationItem"]):
    class Meta:
        index_name = "gsi1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


CLEANUP_JOBS = "cleanup"
REPORT_JOBS = "report"
IMPORT_JOBS = "import"


def jobs_gsi1pk(kind: str) -> str:
    """gsi1: the jobs of a kind not done yet, by when the sweeper should look at them."""
    return f"JOBS#{kind}"


def job_gsi1sk(due_at: str, job: str) -> str:
    return f"{due_at}#{job}"


def jobs_due_before(at: str) -> str:
    """The upper bound of the job sort keys due at or before `at` (a stored timestamp)."""
    return f"{at}#~"


class GenerationItem(Model):
    """pk=SEGMENT#{slug}, sk=GEN#{generation}: a deleted generation and its clean-up job.

    Its stream record (INSERT, cleanup=pending) enqueues the job; while the job is not done the item is
    in the jobs index (gsi1 JOBS#cleanup / {due_at}#...), where the sweeper finds it when it is due.
    """

    class Meta(_TableMeta):
        pass

    ENTITY = "GENERATION"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    entity = UnicodeAttribute(default=ENTITY)
    slug = UnicodeAttribute()
    generation = NumberAttribute()
    deleted_at = UnicodeAttribute()
    exclusion_group = UnicodeAttribute(null=True)
    member_shards = NumberAttribute(null=True)
    cleanup = UnicodeAttribute()  # pending | done | failed (its job waits in the dead-letter queue)
    phase = UnicodeAttribute(null=True)  # walk | verify | done (logic.cleanup.Phase)
    next_shard = NumberAttribute(default=0)
    cursor = UnicodeAttribute(null=True)
    removed = NumberAttribute(default=0)
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)

    jobs = JobsIndex()


class GroupItem(Model):
    """pk=GROUP#{name}, sk=META: the ranges of an exclusion group's live segments.

    Written in the same transaction as the segment it changes, conditional on `revision`, so two
    concurrent creates or raises in one group can never take overlapping ranges.
    """

    class Meta(_TableMeta):
        pass

    ENTITY = "GROUP"
    SK = "META"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    entity = UnicodeAttribute(default=ENTITY)
    name = UnicodeAttribute()
    revision = NumberAttribute()
    ranges = UnicodeAttribute()  # JSON {"SLUG": [start, end]} in bucket units


class RulesIndex(GlobalSecondaryIndex["RuleChangeItem"]):
    class Meta:
        index_name = "gsi1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


class RuleChangeItem(Model):
    """pk=SEGMENT#{slug}, sk=RULE#{at}#{generation}: a percentage rule a generation started to hold
    (no range: the rule ended or the segment was deleted), read one segment at a time. gsi1
    (RULES#{YYYY-MM} / {at}#{slug}) names the segments whose rules changed in a month."""

    class Meta(_TableMeta):
        pass

    ENTITY = "RULE"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    entity = UnicodeAttribute(default=ENTITY)
    slug = UnicodeAttribute()
    generation = NumberAttribute()
    seed = UnicodeAttribute()
    bucket_start = NumberAttribute(null=True)
    bucket_end = NumberAttribute(null=True)
    at = UnicodeAttribute()
    deleted = BooleanAttribute(default=False)
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)

    rules = RulesIndex()


class MembersIndex(GlobalSecondaryIndex["MembershipItem"]):
    class Meta:
        index_name = "gsi1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


class MembershipItem(Model):
    """pk=USER#{user_id}, sk=SEG#{slug}: a membership, an opt-out, or a short-lived tombstone.

    Members and opt-outs are in the members index (gsi1pk=MEMBERS#{slug}#{generation}#{shard}).
    """

    class Meta(_TableMeta):
        pass

    ENTITY = "MEMBERSHIP"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    entity = UnicodeAttribute(default=ENTITY)
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)
    gsi2pk = UnicodeAttribute(null=True)
    gsi2sk = UnicodeAttribute(null=True)
    user_id = NumberAttribute()
    slug = UnicodeAttribute()
    generation = NumberAttribute()
    state = UnicodeAttribute()
    revision = NumberAttribute()
    added_at = UnicodeAttribute(null=True)
    expires_at = UnicodeAttribute(null=True)
    ttl = NumberAttribute(null=True)  # DynamoDB TTL (epoch seconds)
    change_op = UnicodeAttribute(null=True)
    change_reason = UnicodeAttribute(null=True)
    change_at = UnicodeAttribute(null=True)
    change_silent = BooleanAttribute(null=True)  # see models.domain.Change

    members = MembersIndex()


class HistoryItem(Model):
    """pk=USER#{user_id}, sk=HIST#{at}#{slug}#{operation}: one explicit membership change, written once.

    gsi2 (MONTH#{YYYY-MM}#{shard}) serves a month of all users without a hot partition; silent
    changes are not in it.
    """

    class Meta(_TableMeta):
        pass

    ENTITY = "HISTORY"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    entity = UnicodeAttribute(default=ENTITY)
    gsi2pk = UnicodeAttribute(null=True)  # a silent row is in no month: reports never show it
    gsi2sk = UnicodeAttribute(null=True)
    user_id = NumberAttribute()
    slug = UnicodeAttribute()
    operation = UnicodeAttribute()
    reason = UnicodeAttribute()
    at = UnicodeAttribute()
    silent = BooleanAttribute(null=True)  # see models.domain.Change


COUNTER_SHARDS = 64  # a segment generation's counts, spread so that no counter item takes every change


def counter_pk(slug: str, generation: int, shard: int) -> str:
    return f"COUNT#{slug}#{generation}#{shard}"


def counter_shard(user_id: int) -> int:
    return user_id % COUNTER_SHARDS


class CounterItem(Model):
    """pk=COUNT#{slug}#{generation}#{shard}, sk=COUNT: one shard of a generation's member counts, each
    shard its own partition (docs/data-model.md); the stream's reader adds to it."""

    class Meta(_TableMeta):
        pass

    SK = "COUNT"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    explicit = NumberAttribute(default=0)
    opted_out = NumberAttribute(default=0)


class AppliedRecordItem(Model):
    """pk=USER#{user_id}, sk=APPLIED#{stream event id}: a stream record the reader has applied, so that a
    re-delivered one changes the counts once (it is written in the same transaction); kept two days,
    past the stream's 24 hours."""

    class Meta(_TableMeta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    ttl = NumberAttribute()


def applied_sk(event_id: str) -> str:
    return f"APPLIED#{event_id}"


SWEEP_PK = "SWEEP"


class SweepItem(Model):
    """pk=SWEEP, sk=EXPIRIES: how far the sweeper has ended expired memberships (written once a run)."""

    class Meta(_TableMeta):
        pass

    EXPIRIES = "EXPIRIES"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    until = UnicodeAttribute()


class ReportRequestItem(Model):
    """pk=REPORT#{object key}, sk=REQUEST: a report to finish in the background, a job (its stream
    record with status=pending enqueues it; the jobs index holds it while pending)."""

    class Meta(_TableMeta):
        pass

    ENTITY = "REPORT_REQUEST"
    SK = "REQUEST"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    entity = UnicodeAttribute(default=ENTITY)
    key = UnicodeAttribute()
    period = UnicodeAttribute()
    user_id = NumberAttribute(null=True)
    status = UnicodeAttribute()  # pending | done | failed (its job waits in the dead-letter queue)
    requested_at = UnicodeAttribute()
    ttl = NumberAttribute()
    gsi1pk = UnicodeAttribute(null=True)  # in the jobs index (JOBS#report) while pending
    gsi1sk = UnicodeAttribute(null=True)
    # A fanned-out report (an all-users month too big for one writer): docs/background-jobs.md.
    fan_out = BooleanAttribute(null=True)  # asked for by a writer that missed its deadline already
    run = UnicodeAttribute(null=True)  # the fan-out run: its slices' sort keys and temporary objects
    slices = NumberAttribute(null=True)
    planned_at = UnicodeAttribute(null=True)  # the slices' `now`
    closed = BooleanAttribute(null=True)  # the month had settled when planned: the report is final
    claimed_until = UnicodeAttribute(null=True)  # the slices are being composed until then


def report_request_pk(object_key: str) -> str:
    return f"REPORT#{object_key}"


def report_slice_sk(run: str, index: int) -> str:
    return f"{report_slices_prefix(run)}{index:05d}"


def report_slices_prefix(run: str) -> str:
    """The sort keys of one fan-out run's slices: the request's partition, in report order."""
    return f"SLICE#{run}#"


def report_slice_job(object_key: str, run: str, index: int) -> str:
    """How a slice is named in the jobs index (after its due time)."""
    return f"{object_key}#{run}#{index:05d}"


class ReportSliceItem(Model):
    """pk=REPORT#{object key}, sk=SLICE#{run}#{index}: one slice of a fanned-out report, a job of its
    own (in the jobs index, JOBS#report, until done): the month index's rows between two sort-key
    bounds, written by one worker as a temporary object (docs/background-jobs.md)."""

    class Meta(_TableMeta):
        pass

    ENTITY = "REPORT_SLICE"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    entity = UnicodeAttribute(default=ENTITY)
    key = UnicodeAttribute()  # the request's object key
    run = UnicodeAttribute()
    index = NumberAttribute()
    lower = UnicodeAttribute(null=True)  # a stored timestamp, inclusive; none: the month's first slice
    upper = UnicodeAttribute(null=True)  # exclusive; none: the month's last slice
    status = UnicodeAttribute()  # pending | done | failed (its job waits in the dead-letter queue)
    claimed_until = UnicodeAttribute(null=True)  # a worker is writing it until then
    part = UnicodeAttribute(null=True)  # the temporary object, once written (none: the slice is empty)
    rows = NumberAttribute(null=True)
    size = NumberAttribute(null=True)  # bytes
    ttl = NumberAttribute()
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)


IMPORT_SK_PREFIX = "IMPORT#"


def import_sk(import_id: str) -> str:
    """sk of an import in its segment's partition (pk=SEGMENT#{slug}) and of a user's mark of it
    (pk=USER#{user_id}). Import ids sort by creation time, so a segment's newest imports come first
    in a descending Query."""
    return f"{IMPORT_SK_PREFIX}{import_id}"


def import_pk(import_id: str) -> str:
    """pk of an import's chunks: a partition of their own, read by the import's workers and sweeper."""
    return f"IMPORT#{import_id}"


CHUNK_SK_PREFIX = "CHUNK#"


def chunk_sk(number: int) -> str:
    return f"{CHUNK_SK_PREFIX}{number:06d}"


class ImportJobsIndex(GlobalSecondaryIndex["ImportItem"]):
    class Meta:
        index_name = "gsi1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


class ImportItem(Model):
    """pk=SEGMENT#{slug}, sk=IMPORT#{import_id}: a bulk change of the segment from an uploaded file, and
    its job. While not finished it is in the jobs index (gsi1 JOBS#import), due when its upload link
    has expired unused or its chunks made no progress for a while (docs/imports.md)."""

    class Meta(_TableMeta):
        pass

    ENTITY = "IMPORT"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    entity = UnicodeAttribute(default=ENTITY)
    import_id = UnicodeAttribute()
    slug = UnicodeAttribute()
    generation = NumberAttribute()
    mode = UnicodeAttribute()  # add | remove
    status = UnicodeAttribute()  # models.domain.ImportStatus
    created_at = UnicodeAttribute()
    upload_expires_at = UnicodeAttribute()
    ttl_seconds = NumberAttribute(null=True)
    expires_at = UnicodeAttribute(null=True)
    started_at = UnicodeAttribute(null=True)
    finished_at = UnicodeAttribute(null=True)
    failure = UnicodeAttribute(null=True)
    lines = NumberAttribute(default=0)
    applied = NumberAttribute(default=0)
    unchanged = NumberAttribute(default=0)
    rejected = NumberAttribute(default=0)
    chunks = NumberAttribute(null=True)
    chunks_done = NumberAttribute(default=0)
    source_etag = UnicodeAttribute(null=True)
    upload_bytes = NumberAttribute(null=True)
    errors_ready = BooleanAttribute(default=False)
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)

    jobs = ImportJobsIndex()


class ImportChunkItem(Model):
    """pk=IMPORT#{import_id}, sk=CHUNK#{number}: lines of the file one job applies, and what they did."""

    class Meta(_TableMeta):
        pass

    ENTITY = "IMPORT_CHUNK"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    entity = UnicodeAttribute(default=ENTITY)
    number = NumberAttribute()
    first_line = NumberAttribute()
    start = NumberAttribute()
    end = NumberAttribute()
    state = UnicodeAttribute(default="pending")  # pending | done | failed
    applied = NumberAttribute(default=0)
    unchanged = NumberAttribute(default=0)
    rejected = NumberAttribute(default=0)


class ImportMarkItem(Model):
    """pk=USER#{user_id}, sk=IMPORT#{import_id}: the line of the import that decided the user, written in
    the same transaction as the change it made (docs/imports.md); kept IMPORT_MARK_SECONDS."""

    class Meta(_TableMeta):
        pass

    ENTITY = "IMPORT_MARK"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    entity = UnicodeAttribute(default=ENTITY)
    line = NumberAttribute()
    applied = BooleanAttribute()
    ttl = NumberAttribute()


ALL_MODELS: tuple[type[Model], ...] = (
    SegmentItem,
    CounterItem,
    AppliedRecordItem,
    SweepItem,
    PercentageSegmentItem,
    GenerationItem,
    GroupItem,
    RuleChangeItem,
    MembershipItem,
    HistoryItem,
    ReportRequestItem,
    ImportItem,
    ImportChunkItem,
    ImportMarkItem,
    ReportSliceItem,
)


def bind_table(table_name: str) -> None:
    """Point every model at the configured table (settings are read at cold start).

    pynamodb gives each model class a connection of its own, made on its first call: a botocore
    session and client per model a function calls directly, each loading the DynamoDB service model
    (docs/performance.md measures it). pynamodb has no public way to share one, so none is shared.
    """
    for model in ALL_MODELS:
        model.Meta.table_name = table_name


@lru_cache(maxsize=1)
def shared_connection() -> Connection:
    """The container's one pynamodb Connection of its own: raw Queries that read items of several
    kinds, which no single model can, and transactions (`TransactWrite(connection=...)`).

    Its botocore client is made here, once: threads that start together (a report's shards) would
    otherwise each make one, a session and all.
    """
    connection = Connection(region=_TableMeta.region)
    _ = connection.client
    return connection
