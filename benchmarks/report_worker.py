"""One report in a fresh process, so its peak memory is the report writer's own: `python -m
benchmarks.report_worker ROWS` prints {"rows", "seconds", "peak_kb", "parts"} as JSON.

Rows come from a generated history source behind the interface the report reads through
(logic.reports.HistorySource); the CSV lines, the report flow and the S3 multipart upload are the
service's own code, against the S3 endpoint in AWS_ENDPOINT_URL.
"""

import json
import resource
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.harness import BUCKET
from models.domain import HistoryRow, MembershipRecord, Operation, Reason

MONTH = "2023-08"
START = datetime(2023, 8, 1, tzinfo=UTC)


class GeneratedHistory:
    """`rows` history rows spread over the month in report order, made as they are read."""

    def __init__(self, rows: int) -> None:
        self._rows = rows

    def all_users_month(
        self, month: str, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[HistoryRow | MembershipRecord]:
        step = timedelta(days=30) / self._rows
        for number in range(self._rows):
            operation = Operation.ADD if number % 3 else Operation.REMOVE
            yield HistoryRow(
                START + step * number, 1000 + number % 50_000, f"AVITO_SEGMENT_{number % 40}", operation,
                Reason.MANUAL,
            )  # fmt: skip

    def user_until(self, user_id: int, end: str) -> Iterator[HistoryRow]:
        return iter(())


class PlainSegments:
    """The generated segments have no percentage rules."""

    def segment_rule_changes(self, slug: str) -> list[Any]:
        return []

    def rule_changes_of(self, slugs: Iterable[str]) -> list[Any]:
        return []

    def slugs_with_rule_changes(self, months: Iterable[str]) -> set[str]:
        return set()

    def percentage_segments(self, consistent: bool = False) -> list[Any]:
        return []


class NoBackground:
    def request(
        self, key: str, period: str, user_id: int | None, now: datetime, fan_out: bool = False
    ) -> bool:
        raise AssertionError("the benchmark gives the report all the time it needs")


def main(rows: int) -> dict[str, float]:
    from dal.report_storage import S3ReportStorage
    from logic.reports import ReportLink, history_report, parse_period, report_rows

    now = datetime(2023, 9, 2, tzinfo=UTC)
    period = parse_period(MONTH, now)
    source = GeneratedHistory(rows)
    storage = S3ReportStorage(BUCKET, 900)
    start = time.perf_counter()
    answer = history_report(
        storage,
        NoBackground(),
        lambda: report_rows(source, PlainSegments(), period, None, now, user_records=lambda user_id: []),
        period,
        None,
        now,
        should_stop=lambda: False,
    )
    seconds = time.perf_counter() - start
    assert isinstance(answer, ReportLink) and answer.rows == rows, answer
    return {"rows": rows, "seconds": seconds, "peak_kb": peak_resident_kb()}


def peak_resident_kb() -> int:
    """VmHWM, this program's own peak: ru_maxrss would also count the parent's memory from before exec."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
