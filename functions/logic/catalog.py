"""What reads may cache of the segments, per container and for a bounded time (the only staleness the
SPEC allows): every live percentage segment's rule, and the live generation of the segments users hold.

Nothing here decides whether a segment exists for a write: a change reads its named segments from the
table, consistently (`SegmentStore.live_segments`), and hands them to `remember`.
"""

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from models.domain import Segment

MAX_REMEMBERED_SLUGS = 10_000  # a bounded cache of the segments users hold, least recently used first


class SegmentCatalog:
    def __init__(
        self,
        load_rules: Callable[[], list[Segment]],
        load_segments: Callable[[list[str]], dict[str, Segment]],
        max_age_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load_rules = load_rules
        self._load_segments = load_segments
        self._max_age = max_age_seconds
        self._clock = clock
        self._rules: dict[str, Segment] = {}
        self._rules_loaded_at: float | None = None
        self._segments: OrderedDict[str, tuple[Segment | None, float]] = OrderedDict()

    def percentage_segments(self) -> dict[str, Segment]:
        """Every live percentage segment by slug: one Query of the rule set when the cache is stale."""
        now = self._clock()
        if self._rules_loaded_at is None or now - self._rules_loaded_at >= self._max_age:
            self._rules = {segment.slug: segment for segment in self._load_rules()}
            self._rules_loaded_at = now
        return self._rules

    def segments_for(self, slugs: Iterable[str]) -> dict[str, Segment]:
        """The live segments a user's stored slugs name, and every percentage segment: a warm read
        makes no call; the slugs not cached (or too old) are read in one batch."""
        rules = self.percentage_segments()
        now = self._clock()
        wanted = [slug for slug in dict.fromkeys(slugs) if slug not in rules]
        stale = [slug for slug in wanted if not self._fresh(slug, now)]
        if stale:
            self.remember(stale, self._load_segments(stale))
        found = {slug: self._segments[slug][0] for slug in wanted if slug in self._segments}
        return {**{slug: segment for slug, segment in found.items() if segment is not None}, **rules}

    def remember(self, slugs: Iterable[str], live: dict[str, Segment]) -> None:
        """What a read of the table said of `slugs` (absent from `live`: no live generation)."""
        now = self._clock()
        for slug in slugs:
            self._segments[slug] = (live.get(slug), now)
            self._segments.move_to_end(slug)
        while len(self._segments) > MAX_REMEMBERED_SLUGS:
            self._segments.popitem(last=False)

    def forget(self) -> None:
        self._rules_loaded_at = None
        self._segments.clear()

    def _fresh(self, slug: str, now: float) -> bool:
        cached = self._segments.get(slug)
        return cached is not None and now - cached[1] < self._max_age
