"""One import worker in a fresh process, so its peak memory is its own (benchmarks/imports.py runs it):

python -m benchmarks.import_worker plan FILE PLAN          # prints {"lines", "cpu_s", "peak_kb", ...}
python -m benchmarks.import_worker apply FILE PLAN SAMPLE  # prints {"logic": {...}, "client": {...}, ...}

- plan: logic.import_lines.plan_file over FILE, read in the blocks the worker reads from S3; the chunks
  are written to PLAN (JSON).
- apply: every chunk of PLAN read from FILE by its byte range (as the worker's ranged GET) and applied
  with the real chunk path, logic.import_lines.read_chunk and logic.import_users.apply_users on the
  worker's own thread pool (handlers.queue_imports), against an in-memory store: the logic's own CPU.
  Then the first SAMPLE users again through the service's DynamoImportStore, whose DynamoDB is
  AWS_ENDPOINT_URL (a canned endpoint on loopback, benchmarks.imports): pynamodb's, botocore's and the
  HTTP client's CPU on top. Every user is new to the segment, as in a first import.

Both processes import the worker's handler first, so the memory floor is the deployed module set.
"""

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from models.domain import Import, ImportChunk, ImportMark, ImportMode, ImportStatus, MembershipWrite, Segment

SLUG = "BENCH_IMPORT"
IMPORT_ID = "01JBENCHIMPORT000000000000"  # a ULID's 26 characters
TTL_SECONDS = 3600  # the members expire within the month: each is in the month index too, as history is
CREATED = datetime(2024, 1, 1, tzinfo=UTC)


def bench_segment() -> Segment:
    return Segment(SLUG, 1, "", CREATED, CREATED)


def bench_job() -> Import:
    now = datetime.now(UTC)
    link_expires = now + timedelta(minutes=15)
    return Import(IMPORT_ID, SLUG, 1, ImportMode.ADD, ImportStatus.RUNNING, now, link_expires, TTL_SECONDS)


class MemoryImportStore:
    """logic.import_users.ImportUsersStore with nothing behind it: every user is new (no membership, no
    mark), every commit succeeds. It keeps only what a batch of users asked of it, for the latency model:
    {(BatchGetItem keys, transactions, mark-only puts): batches}."""

    def __init__(self, segment: Segment) -> None:
        self._segment = segment
        self._lock = threading.Lock()
        self._batch = [0, 0, 0]
        self.batches: Counter[tuple[int, int, int]] = Counter()

    def live_segments(self, slugs: Iterable[str], consistent: bool) -> dict[str, Segment]:
        self.close_batch()  # apply_users reads the segment once at the start of every batch
        return {slug: self._segment for slug in slugs if slug == self._segment.slug}

    def import_states(self, slug: str, import_id: str, user_ids: list[int]) -> dict[int, Any]:
        self._batch[0] += 2 * len(set(user_ids))  # two keys a user: the membership and the mark
        return dict.fromkeys(user_ids, (None, None))

    def commit_import_users(
        self, changes: list[tuple[MembershipWrite | None, ImportMark]], member_shards: int
    ) -> None:
        with self._lock:  # one user's mark alone is a PutItem; anything else one TransactWriteItems
            self._batch[2 if len(changes) == 1 and changes[0][0] is None else 1] += 1

    def close_batch(self) -> None:
        if any(self._batch):
            self.batches[(self._batch[0], self._batch[1], self._batch[2])] += 1
        self._batch = [0, 0, 0]


def plan(source: Path, plan_path: Path) -> dict[str, Any]:
    import handlers.queue_imports  # noqa: F401  the worker's modules, as deployed
    from dal.import_files import READ_BLOCK
    from logic.import_lines import plan_file

    floor_kb = status_kb("VmRSS")
    with source.open("rb") as file:
        blocks = iter(lambda: file.read(READ_BLOCK), b"")
        (planned, cpu, wall) = timed(lambda: plan_file(blocks))
    plan_path.write_text(json.dumps([list(chunk[:4]) for chunk in planned.chunks]), encoding="utf-8")
    return {
        "lines": planned.lines,
        "chunks": len(planned.chunks),
        "bytes": source.stat().st_size,
        "cpu_s": cpu,
        "wall_s": wall,
        "floor_kb": floor_kb,
        "peak_kb": status_kb("VmHWM"),
    }


def apply(source: Path, plan_path: Path, sample: int) -> dict[str, Any]:
    import handlers.queue_imports as worker  # the worker's modules and its pool, as deployed
    from dal.factory import get_import_store

    floor_kb = status_kb("VmRSS")
    chunks = [ImportChunk(*numbers) for numbers in json.loads(plan_path.read_text(encoding="utf-8"))]
    memory = MemoryImportStore(bench_segment())
    logic = run_chunks(memory, source, chunks, worker.pool, limit=None)
    memory.close_batch()
    store = get_import_store()
    run_chunks(store, source, chunks[:1], worker.pool, limit=200)  # its clients made, as in a warm worker
    client = run_chunks(store, source, chunks, worker.pool, limit=sample)
    return {
        "logic": logic,
        "client": client,
        "batches": [[*shape, count] for shape, count in memory.batches.items()],
        "threads": worker.USER_THREADS,
        "floor_kb": floor_kb,
        "peak_kb": status_kb("VmHWM"),
    }


def run_chunks(
    store: Any, source: Path, chunks: list[ImportChunk], pool: ThreadPoolExecutor, limit: int | None
) -> dict[str, float]:
    """Chunks read and applied one after another, as a worker takes one job after another, until `limit`
    users (None: all); the process's CPU seconds and wall seconds of it."""
    job = bench_job()
    users = applied = 0
    cpu = wall = 0.0
    with source.open("rb") as file:
        for chunk in chunks:
            file.seek(chunk.start)
            data = file.read(chunk.end - chunk.start)
            room = None if limit is None else limit - users
            step = partial(apply_chunk, store, job, data, chunk.first_line, room, pool)
            ((taken, changed), cpu_s, wall_s) = timed(step)
            users, applied = users + taken, applied + changed
            cpu, wall = cpu + cpu_s, wall + wall_s
            if limit is not None and users >= limit:
                break
    return {"users": users, "applied": applied, "cpu_s": cpu, "wall_s": wall}


def apply_chunk(
    store: Any, job: Import, data: bytes, first_line: int, room: int | None, pool: ThreadPoolExecutor
) -> tuple[int, int]:
    """One chunk's bytes read and its users (the first `room` of them) applied: (users, applied)."""
    from logic.import_lines import read_chunk
    from logic.import_users import apply_users

    users = read_chunk(data, first_line).users[:room]
    return len(users), apply_users(store, job, users, lambda: datetime.now(UTC), pool).applied


def timed(action: Callable[[], Any]) -> tuple[Any, float, float]:
    """What the action returns, and the process's CPU seconds (every thread) and wall seconds it took."""
    cpu, wall = time.process_time(), time.perf_counter()
    answer = action()
    return answer, time.process_time() - cpu, time.perf_counter() - wall


def status_kb(field: str) -> int:
    """VmRSS (resident now) or VmHWM (the peak) of this process, in KiB."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


if __name__ == "__main__":
    step, *arguments = sys.argv[1:]
    if step == "plan":
        print(json.dumps(plan(Path(arguments[0]), Path(arguments[1]))))
    else:
        print(json.dumps(apply(Path(arguments[0]), Path(arguments[1]), int(arguments[2]))))
