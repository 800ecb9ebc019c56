"""Buckets: GrowthBook's hash, stable percentages, ramps and exclusion-group ranges."""

import itertools
import json
import math
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logic.buckets import (
    BUCKETS,
    bucket_of,
    buckets_by_seed,
    fnv1a32,
    free_gaps,
    gbhash,
    in_range,
    largest_free_gap,
    lowest_fitting_gap,
    percent_to_units,
    resize_range,
    units_to_percent,
)

CASES_FILE = Path(__file__).parent.parent / "fixtures" / "growthbook_hash_cases.json"
GROWTHBOOK_HASH_CASES = json.loads(CASES_FILE.read_text(encoding="utf-8"))["hash"]

USERS = 1_000_000
SLUG_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
seeds = st.text(alphabet=SLUG_ALPHABET, min_size=1, max_size=100)
user_ids = st.integers(min_value=1, max_value=2**63 - 1)
widths = st.integers(min_value=0, max_value=BUCKETS)


# --- the hash -------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "value", "version", "expected"), GROWTHBOOK_HASH_CASES)
def test_gbhash_matches_growthbook_published_cases(
    seed: str, value: str, version: int, expected: float | None
) -> None:
    assert gbhash(seed, value, version) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", 0x811C9DC5), ("a", 0xE40C292C), ("foo", 0xA9F37ED7), ("foobar", 0xBF9CF968)],
)
def test_fnv1a32_matches_reference_vectors(text: str, expected: int) -> None:
    assert fnv1a32(text) == expected


def test_fnv1a32_hashes_characters_not_utf8_bytes() -> None:
    # GrowthBook's SDKs hash code points; one character is one step even when it is not ASCII.
    assert fnv1a32("é") == ((0x811C9DC5 ^ 0xE9) * 16777619) & 0xFFFFFFFF


@given(seed=seeds, user_id=user_ids)
def test_bucket_of_is_gbhash_v2_of_the_decimal_user_id_in_units(seed: str, user_id: int) -> None:
    hashed = gbhash(seed, str(user_id), 2)
    assert hashed is not None
    assert bucket_of(seed, user_id) == round(hashed * BUCKETS)


@given(seed=seeds, user_id=user_ids)
def test_bucket_of_is_an_integer_bucket_and_the_same_on_every_call(seed: str, user_id: int) -> None:
    bucket = bucket_of(seed, user_id)
    assert 0 <= bucket < BUCKETS
    assert bucket_of(seed, user_id) == bucket


def test_buckets_by_seed_hashes_each_distinct_seed_once() -> None:
    buckets = buckets_by_seed(["discounts", "AVITO_VOICE_MESSAGES", "discounts"], 1000)
    assert buckets == {
        "discounts": bucket_of("discounts", 1000),
        "AVITO_VOICE_MESSAGES": bucket_of("AVITO_VOICE_MESSAGES", 1000),
    }


# --- percentages ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("percent", "units"),
    [(0, 0), (10, 1000), (33.33, 3333), (0.01, 1), (99.99, 9999), (100, 10000), (12.5, 1250)],
)
def test_percent_to_units_converts_exactly(percent: float, units: int) -> None:
    assert percent_to_units(percent) == units


def test_percent_to_units_accepts_decimals_and_trailing_zeros() -> None:
    assert percent_to_units(Decimal("33.330")) == 3333
    assert percent_to_units("10.00") == 1000


@pytest.mark.parametrize("bad", [33.333, 0.001, 0.1 + 0.2, -1, 100.01, 1e3, True, math.nan, math.inf, "ten"])
def test_percent_to_units_rejects_three_decimals_and_out_of_range(bad: object) -> None:
    with pytest.raises(ValueError):
        percent_to_units(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("units", "percent"), [(0, 0), (1000, 10), (3333, 33.33), (1, 0.01), (10000, 100)])
def test_units_to_percent_renders_for_json(units: int, percent: float) -> None:
    rendered = units_to_percent(units)
    assert rendered == percent
    assert json.dumps(rendered) == json.dumps(percent)


@given(units=widths)
def test_units_round_trip_through_percent(units: int) -> None:
    assert percent_to_units(units_to_percent(units)) == units


# --- distribution over a million users ------------------------------------------------


@pytest.fixture(scope="module")
def voice_buckets() -> list[int]:
    return [bucket_of("AVITO_VOICE_MESSAGES", user_id) for user_id in range(1, USERS + 1)]


@pytest.fixture(scope="module")
def performance_buckets() -> list[int]:
    return [bucket_of("AVITO_PERFORMANCE_VAS", user_id) for user_id in range(1, USERS + 1)]


def _within_three_standard_errors(count: int, share: float) -> bool:
    standard_error = math.sqrt(USERS * share * (1 - share))
    return abs(count - USERS * share) <= 3 * standard_error


@pytest.mark.slow
@pytest.mark.parametrize("percent", [0.01, 1, 10, 33.33, 50, 99.99])
def test_a_percentage_segment_holds_its_share_of_consecutive_user_ids(
    voice_buckets: list[int], percent: float
) -> None:
    end = percent_to_units(percent)
    count = sum(1 for bucket in voice_buckets if bucket < end)
    assert _within_three_standard_errors(count, end / BUCKETS), count


@pytest.mark.slow
def test_two_unrelated_half_segments_overlap_on_a_quarter(
    voice_buckets: list[int], performance_buckets: list[int]
) -> None:
    half = percent_to_units(50)
    both = sum(1 for a, b in zip(voice_buckets, performance_buckets, strict=True) if a < half and b < half)
    assert _within_three_standard_errors(both, 0.25), both


# --- ramps ----------------------------------------------------------------------------


@given(seed=seeds, user_id=user_ids, low=widths, high=widths)
def test_raising_a_percentage_keeps_every_user_who_was_in(
    seed: str, user_id: int, low: int, high: int
) -> None:
    low, high = sorted((low, high))
    bucket = bucket_of(seed, user_id)
    if in_range(bucket, (0, low)):
        assert in_range(bucket, (0, high))


@given(start=st.integers(0, BUCKETS), width=widths, new_width=widths)
def test_resizing_only_adds_at_or_removes_from_the_top(start: int, width: int, new_width: int) -> None:
    current = (start, min(start + width, BUCKETS))
    if current[0] == current[1]:
        return
    resized = resize_range(current, new_width, [])
    if resized is None:
        assert current[0] + new_width > BUCKETS
        return
    assert resized == (current[0], current[0] + new_width)


# --- exclusion-group ranges -----------------------------------------------------------


def test_a_new_segment_takes_the_lowest_gap_that_fits() -> None:
    taken = [(0, 1000), (1500, 3000), (3200, 4000)]
    assert lowest_fitting_gap(taken, 500) == (1000, 1500)
    assert lowest_fitting_gap(taken, 200) == (1000, 1200)
    assert lowest_fitting_gap(taken, 600) == (4000, 4600)


def test_a_new_segment_in_an_empty_group_starts_at_zero() -> None:
    assert lowest_fitting_gap([], 3000) == (0, 3000)
    assert lowest_fitting_gap([], BUCKETS) == (0, BUCKETS)


def test_no_gap_fits_a_segment_wider_than_the_largest_gap() -> None:
    taken = [(0, 5000), (5500, 9800)]
    assert lowest_fitting_gap(taken, 501) is None
    assert largest_free_gap(taken) == 500


def test_a_zero_percent_segment_is_empty_at_the_lowest_gap_or_at_zero_when_full() -> None:
    assert lowest_fitting_gap([(0, 1000)], 0) == (1000, 1000)
    assert lowest_fitting_gap([(0, BUCKETS)], 0) == (0, 0)


def test_raising_grows_upward_into_free_space_directly_above() -> None:
    assert resize_range((1000, 2000), 1500, [(0, 1000), (3000, 4000)]) == (1000, 2500)
    assert resize_range((1000, 2000), 2000, [(0, 1000), (3000, 4000)]) == (1000, 3000)


def test_raising_into_a_neighbour_does_not_fit() -> None:
    assert resize_range((1000, 2000), 2001, [(0, 1000), (3000, 4000)]) is None
    assert resize_range((9000, 9500), 1001, []) is None


def test_lowering_trims_the_top() -> None:
    assert resize_range((1000, 3000), 500, [(0, 1000), (3000, 4000)]) == (1000, 1500)
    assert resize_range((1000, 3000), 0, []) == (1000, 1000)


def test_raising_an_empty_range_takes_the_lowest_gap_like_a_new_segment() -> None:
    assert resize_range((1000, 1000), 500, [(0, 1000), (1000, 1200)]) == (1200, 1700)
    assert resize_range((0, 0), 100, [(0, BUCKETS)]) is None


def test_deleting_a_segment_frees_its_range() -> None:
    taken = [(0, 1000), (1000, 3000), (3000, 10000)]
    assert lowest_fitting_gap(taken, 1) is None
    del taken[1]
    assert free_gaps(taken) == [(1000, 3000)]
    assert lowest_fitting_gap(taken, 2000) == (1000, 3000)


def test_largest_free_gap_is_zero_when_full_and_everything_when_empty() -> None:
    assert largest_free_gap([(0, 4000), (4000, BUCKETS)]) == 0
    assert largest_free_gap([]) == BUCKETS
    assert largest_free_gap([(0, 100), (200, 300), (9000, 9500)]) == 8700


@pytest.mark.parametrize("bad", [-1, BUCKETS + 1])
def test_widths_outside_the_bucket_space_are_rejected(bad: int) -> None:
    with pytest.raises(ValueError):
        lowest_fitting_gap([], bad)


operations = st.lists(
    st.tuples(st.sampled_from(["create", "resize", "delete"]), widths, st.integers(0, 50)),
    max_size=60,
)


@given(ops=operations)
def test_ranges_of_a_group_never_overlap_whatever_the_sequence_of_changes(
    ops: list[tuple[str, int, int]],
) -> None:
    ranges: list[tuple[int, int]] = []
    for op, width, pick in ops:
        if op == "create":
            created = lowest_fitting_gap(ranges, width)
            if created is None:
                assert largest_free_gap(ranges) < width
            else:
                assert all(end - start < width for start, end in free_gaps(ranges) if start < created[0])
                ranges.append(created)
        elif ranges:
            index = pick % len(ranges)
            if op == "delete":
                del ranges[index]
            else:
                others = ranges[:index] + ranges[index + 1 :]
                resized = resize_range(ranges[index], width, others)
                if resized is not None:
                    ranges[index] = resized
        _assert_disjoint_and_inside(ranges)


def _assert_disjoint_and_inside(ranges: list[tuple[int, int]]) -> None:
    occupied = sorted(r for r in ranges if r[0] < r[1])
    for start, end in occupied:
        assert 0 <= start < end <= BUCKETS
    for (_, end), (next_start, _) in itertools.pairwise(occupied):
        assert end <= next_start
