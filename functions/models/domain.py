"""What the service stores and decides about, independent of any database.

The value types are NamedTuples, not frozen dataclasses: as immutable, hashable and (HistoryRow)
ordered by field, but made without compiling code for each class, which a dataclass does at import
(about 1 ms each, on every cold start).
"""

from collections import Counter
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

BUCKETS = 10_000  # bucket units: hundredths of a percent


class MembershipState(StrEnum):
    MEMBER = "member"
    OPTED_OUT = "opted_out"  # an explicit remove of a percentage segment
    REMOVED = "removed"  # a tombstone kept briefly so the stream can tell what ended


class Operation(StrEnum):
    ADD = "add"
    REMOVE = "remove"


class Reason(StrEnum):
    MANUAL = "manual"
    IMPORT = "import"  # a bulk change from an uploaded file, one user at a time as a manual one
    AUTO = "auto"
    TTL_EXPIRED = "ttl_expired"
    SEGMENT_DELETED = "segment_deleted"


class Source(StrEnum):
    MANUAL = "manual"
    AUTO = "auto"


# A new generation spreads its members over this many index partitions: a bulk import into one segment
# writes each member to the index at up to ~20,000 users a second (docs/data-model.md, sizing).
MEMBER_SHARDS = 64


class Segment(NamedTuple):
    slug: str
    generation: int
    description: str
    created_at: datetime
    updated_at: datetime
    revision: int = 1  # bumped by every change of the segment; its own writers are conditional on it
    auto_percent: int | None = None  # bucket units, 1000 == 10 %
    exclusion_group: str | None = None
    bucket_start: int | None = None
    bucket_end: int | None = None
    # When the generation's current rule (or, without one, the generation) took effect: a user change
    # decided under it takes effect after it (docs/data-model.md, "Writes that race a rule change").
    rule_since: datetime | None = None
    # A rule change or deletion in progress since this moment: user changes wait until it is decided.
    fenced_since: datetime | None = None
    member_shards: int = MEMBER_SHARDS

    def fenced_at(self, now: datetime, timeout: timedelta) -> bool:
        """A fence younger than `timeout`: its writer may still commit (an older one died)."""
        return self.fenced_since is not None and now - self.fenced_since < timeout

    @property
    def decided_since(self) -> datetime:
        return self.rule_since or self.created_at

    @property
    def seed(self) -> str:
        return self.exclusion_group or self.slug

    @property
    def is_percentage(self) -> bool:
        return self.bucket_start is not None and self.bucket_end is not None

    def holds_bucket(self, bucket: int) -> bool:
        if self.bucket_start is None or self.bucket_end is None:
            return False
        return self.bucket_start <= bucket < self.bucket_end


class Change(NamedTuple):
    """An explicit change of a membership, carried on the item that made it; history stores it.

    `silent`: the change decides who holds the user (the explicit membership or opt-out, not the
    bucket) but changes nothing a client sees: an `add` of a user the bucket already holds, or a
    `remove` of a percentage segment for a user it leaves out. Reports never show it; the per-user
    replay of percentage segments needs it (docs/percentage-segments.md).
    """

    operation: Operation
    reason: Reason
    at: datetime
    silent: bool = False


class MembershipRecord(NamedTuple):
    """The one stored item per (user, slug): a membership, an opt-out or a tombstone."""

    user_id: int
    slug: str
    generation: int
    state: MembershipState
    revision: int
    added_at: datetime | None = None
    expires_at: datetime | None = None
    change: Change | None = None

    def is_member_at(self, now: datetime, generation: int) -> bool:
        return (
            self.state is MembershipState.MEMBER
            and self.generation == generation
            and (self.expires_at is None or now < self.expires_at)
        )

    def is_opt_out_of(self, generation: int) -> bool:
        return self.state is MembershipState.OPTED_OUT and self.generation == generation


class RuleChange(NamedTuple):
    """A percentage rule a segment generation started to hold at `at`: buckets [start, end) of `seed`.

    No range (both None) means the generation holds no rule from then on: PATCH auto_percent=null,
    or the segment was deleted (`deleted`; written for every deletion, percentage or not, so
    generation boundaries are known).
    """

    slug: str
    generation: int
    seed: str
    bucket_start: int | None
    bucket_end: int | None
    at: datetime
    deleted: bool = False

    def holds_bucket(self, bucket: int) -> bool:
        if self.bucket_start is None or self.bucket_end is None:
            return False
        return self.bucket_start <= bucket < self.bucket_end


class GroupAllocation(NamedTuple):
    """The ranges the live segments of one exclusion group hold, and the revision writes are
    conditional on (0: the group has no item yet)."""

    name: str
    ranges: dict[str, tuple[int, int]]
    revision: int = 0

    def taken(self, except_slug: str | None = None) -> list[tuple[int, int]]:
        return [bucket_range for slug, bucket_range in self.ranges.items() if slug != except_slug]

    def with_range(self, slug: str, bucket_range: tuple[int, int] | None) -> "GroupAllocation":
        """The next revision, with `slug` holding `bucket_range` (None: freed)."""
        ranges = {name: held for name, held in self.ranges.items() if name != slug}
        if bucket_range is not None:
            ranges[slug] = bucket_range
        return GroupAllocation(self.name, ranges, self.revision + 1)


class Membership(NamedTuple):
    """One active segment of a user, as GET /users/{id}/segments shows it."""

    slug: str
    source: Source
    added_at: datetime | None
    expires_at: datetime | None


class DeletedGeneration(NamedTuple):
    slug: str
    generation: int
    deleted_at: datetime
    exclusion_group: str | None = None
    member_shards: int = MEMBER_SHARDS


class CleanupPhase(StrEnum):
    WALK = "walk"  # the first walk of the members index, at once
    VERIFY = "verify"  # the second walk, once writers that raced the deletion are done (logic.cleanup)
    DONE = "done"


class CleanupJob(NamedTuple):
    """Where a deleted generation's clean-up stands: its phase, the shard and page it is at."""

    generation: DeletedGeneration
    phase: CleanupPhase = CleanupPhase.WALK
    shard: int = 0
    cursor: str | None = None
    removed: int = 0


class MembershipWrite(NamedTuple):
    """Replace the (user, slug) item with `record`, only if it is still at `expected_revision`."""

    record: MembershipRecord
    expected_revision: int | None  # None: the item must not exist


class MembershipGuard(NamedTuple):
    """A slug the update leaves alone: it must still be as read, so the answer stays true."""

    user_id: int
    slug: str
    expected_revision: int | None


class UserUpdate(NamedTuple):
    """One all-or-nothing write of one user's items, each still as read. `segments` are the named
    segments as read (their member index shards); nothing of theirs is written or checked."""

    segments: list[Segment]
    writes: list[MembershipWrite]
    guards: list[MembershipGuard]


# What membership writes change in the counts: (slug, generation, "explicit" | "opted_out") -> change
CountDeltas = Counter[tuple[str, int, str]]


class MemberCounts(NamedTuple):
    """A segment generation's stored explicit memberships and opt-outs (not its bucket members)."""

    explicit: int = 0
    opted_out: int = 0


class HistoryRow(NamedTuple):
    """One stored explicit change, or one line of the history report. Field order is the report's
    sort order (SPEC: time, user, slug). A `silent` row is never a report line (see Change)."""

    at: datetime
    user_id: int
    slug: str
    operation: Operation
    reason: Reason
    silent: bool = False


class ImportMode(StrEnum):
    ADD = "add"
    REMOVE = "remove"


class ImportStatus(StrEnum):
    AWAITING_UPLOAD = "awaiting_upload"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"


class ImportCounts(NamedTuple):
    """Users whose membership the import changed, users already in that state (duplicate lines too),
    and bad lines."""

    applied: int = 0
    unchanged: int = 0
    rejected: int = 0

    def plus(self, other: "ImportCounts") -> "ImportCounts":
        return ImportCounts(*(mine + theirs for mine, theirs in zip(self, other, strict=True)))


class Import(NamedTuple):
    """A bulk change of one segment generation from an uploaded file (docs/imports.md)."""

    import_id: str
    slug: str
    generation: int
    mode: ImportMode
    status: ImportStatus
    created_at: datetime
    upload_expires_at: datetime
    ttl_seconds: int | None = None
    expires_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    failure: str | None = None
    lines: int = 0  # the file's non-blank data lines, known once the file is planned
    counts: ImportCounts = ImportCounts()
    chunks: int | None = None  # None until the file is planned
    chunks_done: int = 0
    source_etag: str | None = None  # the upload being processed (a later one is ignored)
    upload_bytes: int | None = None
    errors_ready: bool = False  # the CSV of every rejected line is written

    @property
    def finished(self) -> bool:
        return self.status in (ImportStatus.DONE, ImportStatus.FAILED, ImportStatus.EXPIRED)


class ImportChunk(NamedTuple):
    """Lines [first_line, ...) of the file: the bytes [start, end) of its copy. Its state is pending,
    done (counted into the import once) or failed (its job waits in the dead-letter queue)."""

    number: int
    first_line: int
    start: int
    end: int
    state: str = "pending"
    counts: ImportCounts = ImportCounts()


class ImportMark(NamedTuple):
    """The user's line of an import, written with the change it made: the one line that decided the
    user, so a retried chunk or a duplicate line elsewhere in the file is never applied twice."""

    user_id: int
    import_id: str
    line: int
    applied: bool
