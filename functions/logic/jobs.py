"""Which jobs a change of the table starts (docs/background-jobs.md), named by the message that runs
them: a message names its job, the job's own item holds where it stands."""

from collections import defaultdict
from typing import Any

CLEANUP = "cleanup"
REPORT = "report"
IMPORT = "import"


def job_of(entity: str, event_name: str, change: dict[str, Any]) -> dict[str, Any] | None:
    """A new deleted generation starts its clean-up; a report request that became pending starts the
    report's job. Nothing else does (later saves of the same items only record progress)."""
    new, old = change.get("NewImage") or {}, change.get("OldImage") or {}
    if entity == "GENERATION" and event_name == "INSERT":
        return cleanup_job(new["slug"]["S"], int(new["generation"]["N"]))
    if entity == "REPORT_REQUEST" and _text(new, "status") == "pending" and _text(old, "status") != "pending":
        return report_job(new["key"]["S"])
    return None


def due_job(kind: str, item: dict[str, Any]) -> dict[str, Any]:
    """The message of a job the sweeper found due, from its item (DynamoDB JSON): a deleted
    generation, a report request, or a slice of a fanned-out report."""
    if kind == CLEANUP:
        return cleanup_job(item["slug"]["S"], int(item["generation"]["N"]))
    if "index" in item:
        return report_job(item["key"]["S"], item["run"]["S"], int(item["index"]["N"]))
    return report_job(item["key"]["S"])


def cleanup_job(slug: str, generation: int) -> dict[str, Any]:
    return {"kind": CLEANUP, "slug": slug, "generation": generation}


def report_job(key: str, run: str | None = None, index: int | None = None) -> dict[str, Any]:
    """A report request's job, or one slice of its run (docs/background-jobs.md)."""
    if run is None or index is None:
        return {"kind": REPORT, "key": key}
    return {"kind": REPORT, "key": key, "run": run, "slice": index}


def import_job(step: str, slug: str, import_id: str, chunk: int | None = None) -> dict[str, Any]:
    """A step of an import (start, chunk, finish); its upload's S3 event is the first start."""
    job: dict[str, Any] = {"kind": IMPORT, "step": step, "slug": slug, "import_id": import_id}
    if chunk is not None:
        job["chunk"] = chunk
    return job


class Jobs:
    """Jobs to send, each once (one batch of records may name a job twice)."""

    def __init__(self) -> None:
        self._jobs: dict[str, dict[str, Any]] = {}

    def add(self, job: dict[str, Any] | None) -> None:
        if job is not None:
            self._jobs[repr(sorted(job.items()))] = job

    def by_kind(self) -> dict[str, list[dict[str, Any]]]:
        kinds: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for job in self._jobs.values():
            kinds[job["kind"]].append(job)
        return dict(kinds)

    def count(self) -> int:
        return len(self._jobs)


def _text(image: dict[str, Any], name: str) -> str | None:
    value = image.get(name)
    return None if value is None else value.get("S")


MAX_RETRY_SECONDS = 900


def retry_delay(base_seconds: int, receives: int) -> int:
    """How long a job that failed on its `receives`-th receive waits before the next: doubling."""
    return min(MAX_RETRY_SECONDS, base_seconds * 2 ** max(0, receives - 1))
