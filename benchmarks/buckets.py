"""Figure 7: evaluating 50 percentage segments for one user, against 50 manual segments."""

import statistics
import time
from datetime import UTC, datetime

from benchmarks.harness import Figure
from logic.memberships import active_memberships
from models.domain import Segment

SEGMENTS = 50


def catalog(percentage: bool) -> dict[str, Segment]:
    now = datetime(2023, 8, 29, tzinfo=UTC)
    segments = {}
    for number in range(SEGMENTS):
        slug = f"BUCKET_SEGMENT_{number:02d}"
        bounds = {"auto_percent": 1000, "bucket_start": 0, "bucket_end": 1000} if percentage else {}
        segments[slug] = Segment(slug, 1, "", now, now, **bounds)  # type: ignore[arg-type]
    return segments


def per_user_seconds(segments: dict[str, Segment], users: range) -> float:
    now = datetime.now(UTC)
    samples = []
    for user_id in users:
        start = time.perf_counter()
        active_memberships(user_id, segments, (), now)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def measure(users: int) -> tuple[list[Figure], dict[str, float]]:
    percentage, manual = catalog(True), catalog(False)
    per_user_seconds(percentage, range(1, 200))  # warms the per-seed hash state
    bucketed = per_user_seconds(percentage, range(1_000_000, 1_000_000 + users))
    floor = per_user_seconds(manual, range(1_000_000, 1_000_000 + users))
    figure = Figure(
        "bucket_ns",
        bucketed * 1e6,
        "µs",
        floor * 1e6,
        "reported",
        f"50 percentage segments per user, median of {users} users; floor: 50 manual segments",
    )
    return [figure], {}
