"""Imports in the single table: the import (in its segment's partition), its chunks (a partition of
their own) and each user's mark of it (in the user's partition). See docs/imports.md."""

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from dal.entities import (
    CHUNK_SK_PREFIX,
    IMPORT_JOBS,
    IMPORT_SK_PREFIX,
    ImportChunkItem,
    ImportItem,
    ImportMarkItem,
    chunk_sk,
    import_pk,
    import_sk,
    job_gsi1sk,
    jobs_gsi1pk,
    membership_sk,
    segment_pk,
    shared_connection,
    user_of,
    user_pk,
)
from dal.repository import BATCH_GET_KEYS, DynamoSegmentStore, at_revision, record_from_image, transact
from dal.transient import busy_when_transient
from models.domain import (
    Import,
    ImportChunk,
    ImportCounts,
    ImportMark,
    ImportMode,
    ImportStatus,
    MembershipRecord,
    MembershipWrite,
    Segment,
)
from models.errors import ConcurrentChange
from shared.clock import from_stored, to_stored

IMPORT_MARK_SECONDS = 30 * 86_400  # past the import queue's retention (14 days) and a redrive after it
READ_THREADS = 8  # the store's BatchGetItems in flight at once
_READER = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="import-reads")


@busy_when_transient
class DynamoImportStore:
    def __init__(self, segments: DynamoSegmentStore) -> None:
        self._segments = segments
        self._connection = shared_connection()

    def live_segments(self, slugs: Iterable[str], consistent: bool) -> dict[str, Segment]:
        return self._segments.live_segments(slugs, consistent)

    # --- imports --------------------------------------------------------------------------------

    def create_import(self, job: Import, due_at: datetime) -> None:
        item = _import_item(job)
        item.gsi1pk, item.gsi1sk = _job_key(job, due_at)
        item.save(condition=ImportItem.pk.does_not_exist())

    def find_import(self, slug: str, import_id: str) -> Import | None:
        try:
            item = ImportItem.get(segment_pk(slug), import_sk(import_id), consistent_read=True)
        except ImportItem.DoesNotExist:
            return None
        return _import(item)

    def segment_imports(
        self, slug: str, generation: int, limit: int, after: str | None
    ) -> tuple[list[Import], bool]:
        """A page of the generation's imports, newest first (import ids sort by creation), read
        consistently from the segment's partition; and whether more follow."""
        start = None
        if after is not None:
            start = {"pk": {"S": segment_pk(slug)}, "sk": {"S": import_sk(after)}}
        items = ImportItem.query(
            segment_pk(slug),
            ImportItem.sk.startswith(IMPORT_SK_PREFIX),
            filter_condition=ImportItem.generation == generation,
            scan_index_forward=False,
            consistent_read=True,
            limit=limit + 1,
            last_evaluated_key=start,
        )
        page = [_import(item) for item in items]
        return page[:limit], len(page) > limit

    def claim_import(self, job: Import, etag: str, size: int, now: datetime, due_at: datetime) -> bool:
        actions = [
            ImportItem.status.set(ImportStatus.RUNNING.value),
            ImportItem.source_etag.set(etag),
            ImportItem.upload_bytes.set(size),
            ImportItem.started_at.set(to_stored(now)),
            *_scheduled(job, due_at),
        ]
        return self._update(job, actions, ImportItem.status == ImportStatus.AWAITING_UPLOAD.value)

    def save_plan(self, job: Import, chunks: list[ImportChunk], lines: int, due_at: datetime) -> None:
        """The chunks, then the import's count of them: until it is set nothing reads the chunks, so a
        start run again writes them again as they were."""
        with ImportChunkItem.batch_write() as batch:
            for chunk in chunks:
                batch.save(_chunk_item(job.import_id, chunk))
        actions = [ImportItem.chunks.set(len(chunks)), ImportItem.lines.set(lines), *_scheduled(job, due_at)]
        self._update(
            job,
            actions,
            (ImportItem.status == ImportStatus.RUNNING.value) & ImportItem.chunks.does_not_exist(),
        )

    def end_import(self, job: Import, status: ImportStatus, failure: str | None, now: datetime) -> bool:
        actions: list[Action] = [
            ImportItem.status.set(status.value),
            ImportItem.finished_at.set(to_stored(now)),
            *_scheduled(job, None),
        ]
        if failure is not None:
            actions.append(ImportItem.failure.set(failure))
        return self._update(job, actions, ImportItem.status == job.status.value)

    def mark_errors_ready(self, job: Import) -> None:
        self._update(job, [ImportItem.errors_ready.set(True)], ImportItem.pk.exists())

    def schedule_import(self, job: Import, due_at: datetime | None) -> None:
        self._update(job, _scheduled(job, due_at), ImportItem.pk.exists())

    # --- chunks ---------------------------------------------------------------------------------

    def find_chunk(self, import_id: str, number: int) -> ImportChunk | None:
        try:
            item = ImportChunkItem.get(import_pk(import_id), chunk_sk(number), consistent_read=True)
        except ImportChunkItem.DoesNotExist:
            return None
        return _chunk(item)

    def import_chunks(self, import_id: str) -> list[ImportChunk]:
        items = ImportChunkItem.query(
            import_pk(import_id), ImportChunkItem.sk.startswith(CHUNK_SK_PREFIX), consistent_read=True
        )
        return [_chunk(item) for item in items]

    def finish_chunk(self, job: Import, chunk: ImportChunk, counts: ImportCounts, due_at: datetime) -> bool:
        """The chunk done and its counts added to the import's, in one transaction that happens once.
        The import is due again STALE_AFTER from now: it made progress."""
        chunk_item = ImportChunkItem(import_pk(job.import_id), chunk_sk(chunk.number))
        import_item = ImportItem(segment_pk(job.slug), import_sk(job.import_id))
        gsi1pk, gsi1sk = _job_key(job, due_at)

        def write(tx: TransactWrite) -> None:
            tx.update(
                chunk_item,
                [
                    ImportChunkItem.state.set("done"),
                    ImportChunkItem.applied.set(counts.applied),
                    ImportChunkItem.unchanged.set(counts.unchanged),
                    ImportChunkItem.rejected.set(counts.rejected),
                ],
                condition=ImportChunkItem.state != "done",
            )
            tx.update(
                import_item,
                [
                    ImportItem.applied.add(counts.applied),
                    ImportItem.unchanged.add(counts.unchanged),
                    ImportItem.rejected.add(counts.rejected),
                    ImportItem.chunks_done.add(1),
                    ImportItem.gsi1pk.set(gsi1pk),
                    ImportItem.gsi1sk.set(gsi1sk),
                ],
                condition=ImportItem.pk.exists(),
            )

        try:
            transact(self._connection, write, ["chunk"])
        except ConcurrentChange as change:
            if change.changed_segments:
                return False  # done before: counted once already
            raise
        return True

    def fail_chunk(self, import_id: str, number: int) -> None:
        """Its job goes to the dead-letter queue: the sweeper leaves the chunk to its redrive."""
        item = ImportChunkItem(import_pk(import_id), chunk_sk(number))
        try:
            item.update(
                actions=[ImportChunkItem.state.set("failed")], condition=ImportChunkItem.state == "pending"
            )
        except UpdateError as error:
            if not _condition_failed(error):
                raise

    # --- the users ------------------------------------------------------------------------------

    def import_states(
        self, slug: str, import_id: str, user_ids: list[int]
    ) -> dict[int, tuple[MembershipRecord | None, ImportMark | None]]:
        """Each user's membership of the slug and mark of the import: consistent BatchGetItems of two
        keys a user, several at once."""
        keys = [
            {"pk": {"S": user_pk(user_id)}, "sk": {"S": sk}}
            for user_id in dict.fromkeys(user_ids)
            for sk in (membership_sk(slug), import_sk(import_id))
        ]
        batches = [keys[start : start + BATCH_GET_KEYS] for start in range(0, len(keys), BATCH_GET_KEYS)]
        states: dict[int, tuple[MembershipRecord | None, ImportMark | None]] = {
            user_id: (None, None) for user_id in user_ids
        }
        for items in _READER.map(self._batch_get, batches):
            for item in items:
                user_id = user_of(item["pk"]["S"])
                record, mark = states[user_id]
                if item["sk"]["S"].startswith(IMPORT_SK_PREFIX):
                    mark = _mark(user_id, import_id, item)
                else:
                    record = record_from_image(item)
                states[user_id] = (record, mark)
        return states

    def commit_import_users(
        self, changes: list[tuple[MembershipWrite | None, ImportMark]], member_shards: int
    ) -> None:
        """Each user's change and mark, in one transaction of the users' own items (one user's mark
        alone is a PutItem). Every item is conditional on what was read, so ConcurrentChange if any
        user moved on or another line of the import decided a user first."""
        marks = [self._mark_item(mark) for _, mark in changes]
        if len(changes) == 1 and changes[0][0] is None:
            try:
                marks[0].save(condition=ImportMarkItem.pk.does_not_exist())
            except PutError as error:
                if _condition_failed(error):
                    raise ConcurrentChange([]) from error
                raise
            return

        def all_of_them(tx: TransactWrite) -> None:
            for (write, _), mark_item in zip(changes, marks, strict=True):
                if write is not None:
                    membership = self._segments.membership_item(write.record, member_shards)
                    tx.save(membership, condition=at_revision(write.expected_revision))
                tx.save(mark_item, condition=ImportMarkItem.pk.does_not_exist())

        transact(self._connection, all_of_them, [])

    @staticmethod
    def _mark_item(mark: ImportMark) -> ImportMarkItem:
        return ImportMarkItem(
            user_pk(mark.user_id),
            import_sk(mark.import_id),
            line=mark.line,
            applied=mark.applied,
            ttl=int(time.time()) + IMPORT_MARK_SECONDS,
        )

    # --- plumbing -------------------------------------------------------------------------------

    def _update(self, job: Import, actions: list[Action], condition: Any) -> bool:
        item = ImportItem(segment_pk(job.slug), import_sk(job.import_id))
        try:
            item.update(actions=actions, condition=condition)
        except UpdateError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        table = ImportItem.Meta.table_name
        request: dict[str, Any] = {table: {"Keys": keys, "ConsistentRead": True}}
        found: list[dict[str, Any]] = []
        while request:
            answer = self._connection.client.batch_get_item(RequestItems=request)
            found += answer["Responses"].get(table, [])
            request = answer.get("UnprocessedKeys") or {}
        return found


def import_of(item: dict[str, Any]) -> Import:
    """An import from its item as the jobs index returns it (DynamoDB JSON)."""
    return _import(ImportItem.from_raw_data(item))


def _condition_failed(error: Exception) -> bool:
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


def _job_key(job: Import, due_at: datetime) -> tuple[str, str]:
    return jobs_gsi1pk(IMPORT_JOBS), job_gsi1sk(to_stored(due_at), f"{job.slug}#{job.import_id}")


def _scheduled(job: Import, due_at: datetime | None) -> list[Action]:
    if due_at is None:
        return [ImportItem.gsi1pk.remove(), ImportItem.gsi1sk.remove()]
    gsi1pk, gsi1sk = _job_key(job, due_at)
    return [ImportItem.gsi1pk.set(gsi1pk), ImportItem.gsi1sk.set(gsi1sk)]


def _stored(moment: datetime | None) -> str | None:
    return None if moment is None else to_stored(moment)


def _time(text: str | None) -> datetime | None:
    return None if text is None else from_stored(text)


def _import_item(job: Import) -> ImportItem:
    return ImportItem(
        segment_pk(job.slug),
        import_sk(job.import_id),
        import_id=job.import_id,
        slug=job.slug,
        generation=job.generation,
        mode=job.mode.value,
        status=job.status.value,
        created_at=to_stored(job.created_at),
        upload_expires_at=to_stored(job.upload_expires_at),
        ttl_seconds=job.ttl_seconds,
        expires_at=_stored(job.expires_at),
    )


def _import(item: ImportItem) -> Import:
    return Import(
        import_id=item.import_id,
        slug=item.slug,
        generation=int(item.generation),
        mode=ImportMode(item.mode),
        status=ImportStatus(item.status),
        created_at=from_stored(item.created_at),
        upload_expires_at=from_stored(item.upload_expires_at),
        ttl_seconds=None if item.ttl_seconds is None else int(item.ttl_seconds),
        expires_at=_time(item.expires_at),
        started_at=_time(item.started_at),
        finished_at=_time(item.finished_at),
        failure=item.failure,
        lines=int(item.lines or 0),
        counts=ImportCounts(int(item.applied or 0), int(item.unchanged or 0), int(item.rejected or 0)),
        chunks=None if item.chunks is None else int(item.chunks),
        chunks_done=int(item.chunks_done or 0),
        source_etag=item.source_etag,
        upload_bytes=None if item.upload_bytes is None else int(item.upload_bytes),
        errors_ready=bool(item.errors_ready),
    )


def _chunk_item(import_id: str, chunk: ImportChunk) -> ImportChunkItem:
    return ImportChunkItem(
        import_pk(import_id),
        chunk_sk(chunk.number),
        number=chunk.number,
        first_line=chunk.first_line,
        start=chunk.start,
        end=chunk.end,
        state=chunk.state,
    )


def _chunk(item: ImportChunkItem) -> ImportChunk:
    return ImportChunk(
        number=int(item.number),
        first_line=int(item.first_line),
        start=int(item.start),
        end=int(item.end),
        state=item.state,
        counts=ImportCounts(int(item.applied or 0), int(item.unchanged or 0), int(item.rejected or 0)),
    )


def _mark(user_id: int, import_id: str, item: dict[str, Any]) -> ImportMark:
    return ImportMark(user_id, import_id, int(item["line"]["N"]), item["applied"]["BOOL"])
