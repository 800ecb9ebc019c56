"""The segment catalog, cached per container for a bounded time (the only staleness the SPEC allows)."""

import time
from collections.abc import Callable

from models.domain import Segment


class SegmentCatalog:
    def __init__(
        self,
        load: Callable[[], list[Segment]],
        max_age_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._max_age = max_age_seconds
        self._clock = clock
        self._segments: dict[str, Segment] = {}
        self._loaded_at: float | None = None

    def segments(self, fresh: bool = False) -> dict[str, Segment]:
        """Active segments by slug; `fresh` forces a read of the source of truth."""
        now = self._clock()
        stale = self._loaded_at is None or now - self._loaded_at >= self._max_age
        if fresh or stale:
            self._segments = {segment.slug: segment for segment in self._load()}
            self._loaded_at = now
        return self._segments

    def forget(self) -> None:
        self._loaded_at = None
