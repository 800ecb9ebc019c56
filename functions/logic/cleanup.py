"""Background clean-up of a deleted segment generation: its members lose it, page by page."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import NamedTuple, Protocol

from models.domain import (
    Change,
    DeletedGeneration,
    MembershipRecord,
    MembershipState,
    Operation,
    Reason,
)

PAGE_SIZE = 1000  # DynamoDB pages stop at 1 MB anyway; fewer, larger pages mean fewer index reads
PARALLEL_WRITES = 8


class CleanupStore(Protocol):
    def members_page(
        self, slug: str, generation: int, shard: int, cursor: str | None, limit: int
    ) -> tuple[list[MembershipRecord], str | None]: ...

    def end_membership(self, record: MembershipRecord, ended: MembershipRecord) -> bool: ...

    def drop_opt_out(self, record: MembershipRecord) -> None: ...

    def save_cleanup_progress(
        self, generation: DeletedGeneration, next_shard: int, cursor: str | None, removed: int, done: bool
    ) -> None: ...


class Progress(NamedTuple):
    shard: int = 0
    cursor: str | None = None
    removed: int = 0


def ended_by_deletion(record: MembershipRecord, generation: DeletedGeneration) -> MembershipRecord:
    """The tombstone of a member whose segment was deleted; history reads its change.

    An add that committed after the delete began carries a later time than the deletion; the removal
    then takes effect just after it, so a membership never ends before it began.
    """
    at = generation.deleted_at
    if record.change is not None and record.change.at >= at:
        at = record.change.at + timedelta(microseconds=1)
    change = Change(Operation.REMOVE, Reason.SEGMENT_DELETED, at)
    return record._replace(state=MembershipState.REMOVED, revision=record.revision + 1, change=change)


def clean_up_generation(
    store: CleanupStore,
    generation: DeletedGeneration,
    progress: Progress,
    shards: int,
    time_left: Callable[[], bool],
) -> Progress:
    """Walk every shard of the members index; save progress and stop when time runs short.

    Saving progress re-triggers this function through the stream, so any size finishes.
    Every write is conditional on the record read, so a re-delivered or overlapping run is harmless.
    """
    shard, cursor, removed = progress.shard, progress.cursor, progress.removed
    with ThreadPoolExecutor(max_workers=PARALLEL_WRITES) as pool:
        while shard < shards:
            records, cursor = store.members_page(
                generation.slug, generation.generation, shard, cursor, PAGE_SIZE
            )
            removed += sum(pool.map(lambda record: _end(store, record, generation), records))
            if cursor is None:
                shard += 1
            if shard < shards and not time_left():
                store.save_cleanup_progress(generation, shard, cursor, removed, done=False)
                return Progress(shard, cursor, removed)
    store.save_cleanup_progress(generation, shard, None, removed, done=True)
    return Progress(shard, None, removed)


def _end(store: CleanupStore, record: MembershipRecord, generation: DeletedGeneration) -> int:
    if record.state is MembershipState.OPTED_OUT:
        store.drop_opt_out(record)  # its history is stored already; nothing shows for it
        return 0
    if record.state is MembershipState.MEMBER:
        return int(store.end_membership(record, ended_by_deletion(record, generation)))
    return 0
