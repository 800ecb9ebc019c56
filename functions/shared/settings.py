"""Every setting a function reads, from environment variables, validated once per container.

A NamedTuple and a few checks: a validation library would add to every cold start for a dozen numbers.
"""

import os
from functools import lru_cache
from typing import NamedTuple


class SettingsError(ValueError):
    """An environment variable is missing or out of range: the function cannot start."""


class Settings(NamedTuple):
    table_name: str
    # The SPEC caps catalog staleness at 30 s when deployed; 0 turns the cache off.
    catalog_cache_seconds: float = 30
    # Removed memberships stay as tombstones this long so history can be derived from the stream.
    tombstone_seconds: int = 86_400
    reports_bucket: str | None = None
    presigned_url_seconds: int = 900
    write_attempts: int = 6
    # API Gateway gives up after 30 s: a report not written by then is finished in the background.
    report_deadline_seconds: float = 20
    # Month-index partitions a month's history rows are spread over (docs/data-model.md, sizing), and
    # how many reports read: at least every count rows were written with (0: the same as written).
    history_shards: int = 128
    history_read_shards: int = 0
    # The job queues (docs/background-jobs.md): set on the functions that send to them.
    cleanup_queue_url: str | None = None
    report_queue_url: str | None = None
    import_queue_url: str | None = None
    # The bucket imports are uploaded to (docs/imports.md), on the functions that sign its links or read it.
    imports_bucket: str | None = None
    # The sweeper ends expired memberships this often within its minute (0: once a run; template:
    # ExpirySweepSeconds), so that an expiry shows in history and the member counts within as long.
    expiry_sweep_seconds: int = 0
    # SQS moves a job to its dead-letter queue after this many receives (template: maxReceiveCount).
    job_max_receives: int = 5
    # A failed job is tried again after this long, doubled at each failure (template: JobRetrySeconds).
    job_retry_seconds: int = 60
    # Report workers at once (template: ReportWorkers, the report queue's maximum concurrency): a
    # fanned-out month is cut into four slices a worker.
    report_workers: int = 32
    # How long the report worker writes an all-users month alone before fanning it out (template:
    # ReportSingleWriterSeconds; 0: fan out at once). Not when a request missed its deadline already.
    report_single_writer_seconds: float = 20

    def checked(self) -> "Settings":
        _check(len(self.table_name) >= 3, "table_name", "at least 3 characters")
        _check(0 <= self.catalog_cache_seconds <= 30, "catalog_cache_seconds", "from 0 to 30")
        _check(self.tombstone_seconds >= 60, "tombstone_seconds", "at least 60")
        _check(1 <= self.presigned_url_seconds <= 900, "presigned_url_seconds", "from 1 to 900")
        _check(1 <= self.write_attempts <= 20, "write_attempts", "from 1 to 20")
        _check(0 < self.report_deadline_seconds <= 25, "report_deadline_seconds", "above 0, at most 25")
        _check(1 <= self.history_shards <= 1000, "history_shards", "from 1 to 1000")
        _check(0 <= self.history_read_shards <= 1000, "history_read_shards", "from 0 to 1000")
        _check(1 <= self.job_max_receives <= 1000, "job_max_receives", "from 1 to 1000")
        _check(0 <= self.job_retry_seconds <= 900, "job_retry_seconds", "from 0 to 900")
        _check(0 <= self.expiry_sweep_seconds <= 50, "expiry_sweep_seconds", "from 0 to 50")
        _check(2 <= self.report_workers <= 1000, "report_workers", "from 2 to 1000")
        _check(0 <= self.report_single_writer_seconds <= 600, "report_single_writer_seconds", "from 0 to 600")
        return self


def _check(holds: bool, name: str, rule: str) -> None:
    if not holds:
        raise SettingsError(f"{name.upper()} must be {rule}")


def _parse(name: str, kind: type, text: str) -> object:
    try:
        return kind(text)
    except ValueError:
        raise SettingsError(f"{name.upper()} must be a number, not {text!r}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """A missing or invalid variable fails at cold start, not in the middle of a request."""
    values: dict[str, object] = {}
    for name, declared in Settings.__annotations__.items():
        text = os.environ.get(name.upper())
        if text is None:
            continue
        kind: type = declared if declared in (int, float) else str
        values[name] = _parse(name, kind, text)
    if "table_name" not in values:
        raise SettingsError("TABLE_NAME must be set")
    return Settings(**values).checked()  # type: ignore[arg-type]
