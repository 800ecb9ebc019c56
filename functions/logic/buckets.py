"""Stable buckets for percentage segments, and the bucket ranges of exclusion groups.

A user's bucket for a seed is GrowthBook's hash version 2 scaled to an integer in
[0, BUCKETS), so any GrowthBook SDK or the SQL function in sql/buckets.sql gives the
same answer: ``bucket_of(seed, user_id) == gbhash(seed, str(user_id), 2) * 10000``.
Percentages are stored as integers in the same unit (hundredths of a percent), and a
segment holds the half-open range ``[start, end)`` of buckets, so membership is
``start <= bucket < end`` with no floating point anywhere.

Everything here is pure: no I/O, no clock, stdlib only.
"""

from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from functools import lru_cache

BUCKETS = 10_000  # bucket units: one unit is a hundredth of a percent
MAX_PERCENT = 100

_FNV_OFFSET_BASIS = 2_166_136_261
_FNV_PRIME = 16_777_619
_UINT32 = 0xFFFF_FFFF

Range = tuple[int, int]


def _fnv1a32_continue(hval: int, text: str) -> int:
    # For ASCII, the bytes are the characters and iterating bytes is twice as fast as ord().
    codes: Iterable[int] = text.encode("ascii") if text.isascii() else map(ord, text)
    for code in codes:
        hval = ((hval ^ code) * _FNV_PRIME) & _UINT32
    return hval


def fnv1a32(text: str) -> int:
    """32-bit FNV-1a over the string's characters (code points), as GrowthBook's SDKs do."""
    return _fnv1a32_continue(_FNV_OFFSET_BASIS, text)


@lru_cache(maxsize=4096)
def _seed_state(seed: str) -> int:
    # FNV-1a is a stream: hashing seed + value continues from the state after the seed.
    return fnv1a32(seed)


def gbhash(seed: str, value: str, version: int) -> float | None:
    """GrowthBook's hash: a float in [0, 1) for versions 1 and 2, None for any other version."""
    if version == 2:
        n = fnv1a32(str(fnv1a32(seed + value)))
        return (n % 10_000) / 10_000
    if version == 1:
        n = fnv1a32(value + seed)
        return (n % 1_000) / 1_000
    return None


def bucket_of(seed: str, user_id: int) -> int:
    """The user's bucket for `seed`, an integer in [0, BUCKETS): gbhash(seed, str(user_id), 2) * 10000."""
    inner = _fnv1a32_continue(_seed_state(seed), str(user_id))
    return fnv1a32(str(inner)) % BUCKETS


def buckets_by_seed(seeds: Iterable[str], user_id: int) -> dict[str, int]:
    """One bucket per distinct seed: segments of one exclusion group share a seed and a hash."""
    return {seed: bucket_of(seed, user_id) for seed in set(seeds)}


def in_range(bucket: int, bucket_range: Range) -> bool:
    start, end = bucket_range
    return start <= bucket < end


def percent_to_units(percent: int | float | Decimal | str) -> int:
    """A percentage from 0 to 100 with at most two decimals, as bucket units: 10 -> 1000, 33.33 -> 3333.

    Floats go through their shortest repr, so 33.33 is exactly 3333 while 0.1 + 0.2 is rejected.
    Raises ValueError for anything else (bools, NaN, infinities, three decimals, out of range).
    """
    if isinstance(percent, bool):
        raise ValueError("a percentage is a number, not a boolean")
    try:
        exact = Decimal(str(percent))
    except InvalidOperation as error:
        raise ValueError(f"not a number: {percent!r}") from error
    if not exact.is_finite():
        raise ValueError(f"not a finite number: {percent!r}")
    units = exact * 100
    if units != units.to_integral_value():
        raise ValueError(f"at most two decimals: {percent!r}")
    if not 0 <= exact <= MAX_PERCENT:
        raise ValueError(f"a percentage is between 0 and 100: {percent!r}")
    return int(units)


def units_to_percent(units: int) -> int | float:
    """Bucket units as the percentage JSON shows: 1000 -> 10, 3333 -> 33.33, 1 -> 0.01."""
    if not 0 <= units <= BUCKETS:
        raise ValueError(f"bucket units are between 0 and {BUCKETS}: {units!r}")
    whole, hundredths = divmod(units, 100)
    return whole if hundredths == 0 else units / 100


def free_gaps(taken: Sequence[Range]) -> list[Range]:
    """The non-empty free ranges of [0, BUCKETS), lowest first, around the `taken` ranges."""
    gaps: list[Range] = []
    cursor = 0
    for start, end in sorted(r for r in taken if r[0] < r[1]):
        if start > cursor:
            gaps.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < BUCKETS:
        gaps.append((cursor, BUCKETS))
    return gaps


def lowest_fitting_gap(taken: Sequence[Range], width: int) -> Range | None:
    """The range a new segment of `width` units takes: the start of the lowest free gap that fits.

    Width 0 always fits: it is the empty range at the start of the lowest free gap (where a
    later raise is most likely to find room), or (0, 0) when the group is full. An empty range
    holds nobody, so it never overlaps anything. None when no gap is wide enough.
    """
    _check_width(width)
    gaps = free_gaps(taken)
    if width == 0:
        start = gaps[0][0] if gaps else 0
        return (start, start)
    for start, end in gaps:
        if end - start >= width:
            return (start, start + width)
    return None


def largest_free_gap(taken: Sequence[Range]) -> int:
    """The widest free range in units (0 when full): what a 409 reports as `free_percent`."""
    return max((end - start for start, end in free_gaps(taken)), default=0)


def resize_range(current: Range, new_width: int, taken_by_others: Sequence[Range]) -> Range | None:
    """The range after a change of percentage, or None when it does not fit.

    Lowering trims the top (everyone left was already in); raising grows upward into the
    free space directly above (everyone in stays in). An empty range holds nobody, so
    raising it takes the lowest fitting gap, as a new segment would.
    """
    _check_width(new_width)
    start, end = current
    if start == end:
        return current if new_width == 0 else lowest_fitting_gap(taken_by_others, new_width)
    if new_width <= end - start:
        return (start, start + new_width)
    new_end = start + new_width
    if new_end > BUCKETS:
        return None
    if any(o_start < new_end and end < o_end for o_start, o_end in taken_by_others if o_start < o_end):
        return None
    return (start, new_end)


def _check_width(width: int) -> None:
    if not 0 <= width <= BUCKETS:
        raise ValueError(f"a width is between 0 and {BUCKETS} units: {width!r}")
