"""Bulk changes of a segment from an uploaded file of user ids (docs/imports.md).

An import is created with a presigned upload link; the upload's S3 event starts it: the file is kept
(copied, so a later upload to the link changes nothing), cut into chunks, and each chunk is a job on
the import queue, applied by parallel workers (logic.import_users). The chunk that completes the
import sends the job that finishes it: the CSV of rejected lines, and `done`. Every step is idempotent
and its state lives in the table, so a message received twice, late, or again after a redrive is
harmless; the sweeper sends again the jobs of an import that made no progress for a while.
"""

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from logic.import_lines import MAX_BYTES, MAX_LINES, error_lines, plan_file, read_chunk
from logic.import_users import ExpiryPassed, ImportUsersStore, SegmentGone, apply_users
from logic.jobs import import_job
from models.domain import Import, ImportChunk, ImportCounts, ImportMode, ImportStatus
from models.errors import ImportNotFound, InvalidRequest, SegmentNotFound

UPLOAD_GRACE = timedelta(minutes=5)  # an upload begun just before its link expired may end after it
STALE_AFTER = timedelta(minutes=20)  # a running import without progress this long: its jobs are sent again
MAX_EXPIRY = timedelta(days=3650)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
Clock = Callable[[], datetime]

SEGMENT_DELETED = "segment deleted"
TOO_BIG = f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB"
TOO_LONG = f"the file has more than {MAX_LINES:,} lines"
REPLACED = "the file was replaced while the import started; create a new import"
EXPIRY_PASSED = "expires_at passed before the import could apply it"


class ImportRequest(NamedTuple):
    mode: ImportMode
    ttl_seconds: int | None = None
    expires_at: datetime | None = None


class UploadLink(NamedTuple):
    url: str
    headers: dict[str, str]
    expires_at: datetime


class ImportStore(ImportUsersStore, Protocol):
    def create_import(self, job: Import, due_at: datetime) -> None: ...

    def find_import(self, slug: str, import_id: str) -> Import | None:
        """Read consistently."""
        ...

    def segment_imports(
        self, slug: str, generation: int, limit: int, after: str | None
    ) -> tuple[list[Import], bool]: ...

    def claim_import(self, job: Import, etag: str, size: int, now: datetime, due_at: datetime) -> bool:
        """awaiting_upload → running with this upload; False if it was not awaiting it any more."""
        ...

    def save_plan(self, job: Import, chunks: list[ImportChunk], lines: int, due_at: datetime) -> None: ...

    def find_chunk(self, import_id: str, number: int) -> ImportChunk | None: ...

    def import_chunks(self, import_id: str) -> list[ImportChunk]: ...

    def finish_chunk(self, job: Import, chunk: ImportChunk, counts: ImportCounts, due_at: datetime) -> bool:
        """The chunk done and its counts added to the import's, once; False if it was done before."""
        ...

    def fail_chunk(self, import_id: str, number: int) -> None: ...

    def end_import(self, job: Import, status: ImportStatus, failure: str | None, now: datetime) -> bool:
        """A running (or awaiting) import ends; False if it had ended already."""
        ...

    def mark_errors_ready(self, job: Import) -> None: ...

    def schedule_import(self, job: Import, due_at: datetime | None) -> None:
        """When the sweeper looks at it next (None: not until a redriven job makes progress)."""
        ...


class ImportFiles(Protocol):
    def upload_link(self, slug: str, import_id: str) -> UploadLink: ...

    def upload_size(self, slug: str, import_id: str, etag: str) -> int | None:
        """The upload's size if it is still the one with this ETag."""
        ...

    def keep_upload(self, slug: str, import_id: str, etag: str) -> bool:
        """Copy the upload with this ETag where a later upload cannot reach; False if it was replaced."""
        ...

    def source_blocks(self, slug: str, import_id: str) -> Iterator[bytes]: ...

    def source_range(self, slug: str, import_id: str, start: int, end: int) -> bytes: ...

    def save_errors(self, slug: str, import_id: str, chunk: int, lines: list[str]) -> None: ...

    def compose_errors(self, slug: str, import_id: str, chunks: list[int]) -> None: ...

    def errors_link(self, slug: str, import_id: str) -> str: ...

    def drop_files(self, slug: str, import_id: str) -> None:
        """The upload and its copy: the users' ids are not kept longer than the import needs them."""
        ...


class ImportQueue(Protocol):
    def send(self, jobs: Iterable[dict[str, Any]]) -> int: ...


def new_import_id(now: datetime, entropy: Callable[[int], bytes] = os.urandom) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, in Crockford's base 32: 26 characters that
    sort in creation order."""
    number = (int(now.timestamp() * 1000) << 80) | int.from_bytes(entropy(10), "big")
    return "".join(_CROCKFORD[(number >> shift) & 31] for shift in range(125, -1, -5))


def create_import(
    store: ImportStore, files: ImportFiles, slug: str, request: ImportRequest, now: datetime
) -> tuple[Import, UploadLink]:
    if request.expires_at is not None:  # a bad body is 400 whatever the slug, as for a user's change
        _check_expiry(request.expires_at, now)
    segment = store.live_segments([slug], consistent=True).get(slug)
    if segment is None:
        raise SegmentNotFound(slug)
    import_id = new_import_id(now)
    link = files.upload_link(slug, import_id)
    job = Import(
        import_id, slug, segment.generation, request.mode, ImportStatus.AWAITING_UPLOAD, now,
        link.expires_at, request.ttl_seconds, request.expires_at,
    )  # fmt: skip
    store.create_import(job, due_at=link.expires_at + UPLOAD_GRACE)
    return job, link


def find_import(store: ImportStore, slug: str, import_id: str) -> Import:
    """An import of the segment's live generation (a re-created slug starts without any)."""
    segment = store.live_segments([slug], consistent=True).get(slug)
    if segment is None:
        raise SegmentNotFound(slug)
    job = store.find_import(slug, import_id)
    if job is None or job.generation != segment.generation:
        raise ImportNotFound(slug, import_id)
    return job


def list_imports(store: ImportStore, slug: str, limit: int, after: str | None) -> tuple[list[Import], bool]:
    segment = store.live_segments([slug], consistent=True).get(slug)
    if segment is None:
        raise SegmentNotFound(slug)
    return store.segment_imports(slug, segment.generation, limit, after)


def errors_link(files: ImportFiles, job: Import) -> str | None:
    """The errors CSV's link, once it is written and only if a line was rejected."""
    if job.errors_ready and job.counts.rejected:
        return files.errors_link(job.slug, job.import_id)
    return None


def upload_arrived(
    store: ImportStore, files: ImportFiles, queue: ImportQueue, slug: str, import_id: str, etag: str,
    clock: Clock,
) -> str:  # fmt: skip
    """An upload's S3 event: the first upload of an import awaiting it starts the import; any other
    (a later upload, one after the link expired) is ignored. What happened, for the log."""
    job = store.find_import(slug, import_id)
    if job is None:
        return "unknown import"
    if job.status is ImportStatus.AWAITING_UPLOAD:
        size = files.upload_size(slug, import_id, etag)
        if size is None:
            return "replaced already"  # its replacement's own event starts the import
        now = clock()
        if not store.claim_import(job, etag, size, now, due_at=now + STALE_AFTER):
            return upload_arrived(store, files, queue, slug, import_id, etag, clock)
        job = job._replace(status=ImportStatus.RUNNING, source_etag=etag, started_at=now, upload_bytes=size)
        return start_import(store, files, queue, job, clock)
    if job.status is ImportStatus.RUNNING and job.source_etag == etag:
        return start_import(store, files, queue, job, clock)  # the same event again: carry on
    return f"ignored: the import is {job.status.value}"


def start_import(
    store: ImportStore, files: ImportFiles, queue: ImportQueue, job: Import, clock: Clock
) -> str:
    """Keep the file, plan its chunks and send their jobs; run again, it sends what is not done yet."""
    if job.chunks is not None:
        return f"resent {resend_chunks(store, queue, job)} jobs"
    assert job.source_etag is not None
    now = clock()
    segment = store.live_segments([job.slug], consistent=True).get(job.slug)
    if segment is None or segment.generation != job.generation:
        return fail_import(store, queue, job, SEGMENT_DELETED, now)
    if (job.upload_bytes or 0) > MAX_BYTES:
        return fail_import(store, queue, job, TOO_BIG, now)
    if job.expires_at is not None and job.expires_at <= now:
        return fail_import(store, queue, job, EXPIRY_PASSED, now)
    if not files.keep_upload(job.slug, job.import_id, job.source_etag):
        return fail_import(store, queue, job, REPLACED, now)
    plan = plan_file(files.source_blocks(job.slug, job.import_id))
    if plan.lines > MAX_LINES:
        return fail_import(store, queue, job, TOO_LONG, now)
    store.save_plan(job, plan.chunks, plan.lines, due_at=clock() + STALE_AFTER)
    planned = job._replace(chunks=len(plan.chunks), lines=plan.lines)
    return f"planned {len(plan.chunks)} chunks, sent {resend_chunks(store, queue, planned)} jobs"


def run_chunk(
    store: ImportStore, files: ImportFiles, queue: ImportQueue, slug: str, import_id: str, number: int,
    clock: Clock, pool: ThreadPoolExecutor,
) -> ImportCounts | None:  # fmt: skip
    """Apply one chunk's lines and count them into the import, once; the chunk that completes the
    import sends its finishing job. None if there was nothing to do."""
    job = store.find_import(slug, import_id)
    if job is None or job.status is not ImportStatus.RUNNING:
        return None
    chunk = store.find_chunk(import_id, number)
    if chunk is None or chunk.state == "done":
        return None
    lines = read_chunk(files.source_range(slug, import_id, chunk.start, chunk.end), chunk.first_line)
    try:
        counts = apply_users(store, job, lines.users, clock, pool)
    except SegmentGone:
        fail_import(store, queue, job, SEGMENT_DELETED, clock())
        return None
    except ExpiryPassed:
        fail_import(store, queue, job, EXPIRY_PASSED, clock())
        return None
    counts = counts._replace(rejected=len(lines.rejected))
    if lines.rejected:
        files.save_errors(slug, import_id, number, list(error_lines(lines.rejected)))
    if not store.finish_chunk(job, chunk, counts, due_at=clock() + STALE_AFTER):
        return None
    after = store.find_import(slug, import_id)
    if after is not None and after.status is ImportStatus.RUNNING and _complete(after):
        queue.send([import_job("finish", slug, import_id)])
    return counts


def finish_import(store: ImportStore, files: ImportFiles, slug: str, import_id: str, clock: Clock) -> str:
    """A complete import: the CSV of its rejected lines, then `done`. A failed one gets the CSV of the
    lines it rejected before it stopped."""
    job = store.find_import(slug, import_id)
    if job is None:
        return "unknown import"
    if job.status is ImportStatus.RUNNING and _complete(job):
        _write_errors(store, files, job)
        store.end_import(job, ImportStatus.DONE, None, clock())
        files.drop_files(slug, import_id)
        return "done"
    if job.status is ImportStatus.FAILED and not job.errors_ready:
        _write_errors(store, files, job)
        files.drop_files(slug, import_id)
        return "failed, its errors written"
    if job.status is ImportStatus.DONE:
        files.drop_files(slug, import_id)  # a finish run before may have stopped before it did
    return f"nothing to do: the import is {job.status.value}"


def fail_import(store: ImportStore, queue: ImportQueue, job: Import, failure: str, now: datetime) -> str:
    """The import stops; what it wrote stays (a deleted segment's members are cleaned with it)."""
    if store.end_import(job, ImportStatus.FAILED, failure, now):
        queue.send([import_job("finish", job.slug, job.import_id)])
    return f"failed: {failure}"


def sweep_import(store: ImportStore, queue: ImportQueue, job: Import, now: datetime) -> str:
    """An import the jobs index says is due: a link that expired unused, or a running import without
    progress for STALE_AFTER, whose jobs are sent again (or which waits for a redrive)."""
    if job.status is ImportStatus.AWAITING_UPLOAD:
        store.end_import(job, ImportStatus.EXPIRED, None, now)
        return "expired"
    if job.status is not ImportStatus.RUNNING:
        store.schedule_import(job, None)
        return "ended already"
    store.schedule_import(job, now + STALE_AFTER)
    if job.chunks is None:
        queue.send([import_job("start", job.slug, job.import_id)])
        return "start sent again"
    if _complete(job):
        queue.send([import_job("finish", job.slug, job.import_id)])
        return "finish sent again"
    sent = resend_chunks(store, queue, job)
    if sent == 0:  # every chunk left is failed: it waits, whole, in the dead-letter queue
        store.schedule_import(job, None)
    return f"resent {sent} jobs"


def resend_chunks(store: ImportStore, queue: ImportQueue, job: Import) -> int:
    pending = [chunk for chunk in store.import_chunks(job.import_id) if chunk.state == "pending"]
    if not pending and _complete(job):
        return queue.send([import_job("finish", job.slug, job.import_id)])
    return queue.send(import_job("chunk", job.slug, job.import_id, chunk.number) for chunk in pending)


def _complete(job: Import) -> bool:
    return job.chunks is not None and job.chunks_done >= job.chunks


def _write_errors(store: ImportStore, files: ImportFiles, job: Import) -> None:
    if job.counts.rejected:
        chunks = [chunk.number for chunk in store.import_chunks(job.import_id) if chunk.counts.rejected]
        files.compose_errors(job.slug, job.import_id, chunks)
    store.mark_errors_ready(job)


def _check_expiry(expires_at: datetime, now: datetime) -> None:
    if expires_at <= now:
        raise InvalidRequest(
            "expires_at must be in the future",
            errors=[{"field": "expires_at", "message": "must be in the future"}],
        )
    if expires_at > now + MAX_EXPIRY:
        raise InvalidRequest(
            "expires_at must be at most ten years ahead",
            errors=[{"field": "expires_at", "message": "must be at most ten years ahead"}],
        )
