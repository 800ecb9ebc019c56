"""A fanned-out report's pieces on their own: the month's slices, the sort-key bounds that keep every
row in exactly one of them, and the upload parts that compose their objects into one."""

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from dal.entities import expiry_month_sk, history_month_sk, month_sk_bound, month_sk_parts
from dal.report_storage import MIB, compose_plan
from logic.jobs import due_job, report_job
from logic.report_fanout import Part, plan_slices
from logic.reports import parse_period
from shared.clock import to_stored

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_slices_cover_the_month_end_to_end_cut_on_whole_seconds() -> None:
    period = parse_period("2023-05", NOW)
    slices = plan_slices(period, 8)
    assert [piece.number for piece in slices] == list(range(8))
    assert slices[0].since is None and slices[-1].until is None
    for before, after in itertools.pairwise(slices):
        assert before.until == after.since and before.until is not None
        assert before.until.microsecond == 0 and period.start < before.until < period.end
    assert slices[1].since == period.start + (period.end - period.start) / 8


def test_every_key_of_an_instant_sorts_after_its_bound_and_before_the_next_one() -> None:
    cut = datetime(2023, 5, 4, 21, tzinfo=UTC)
    bound, next_bound = month_sk_bound(to_stored(cut)), month_sk_bound(to_stored(cut + timedelta(seconds=1)))
    at_cut = [
        history_month_sk(to_stored(cut), 1, "A", "add"),
        history_month_sk(to_stored(cut), 2, "A", "remove"),
        expiry_month_sk(to_stored(cut), 2, "A"),  # the undeleted expiry of user 2's row above
        history_month_sk(to_stored(cut), 9_223_372_036_854_775_807, "Z.z-9_", "remove"),
    ]
    just_before = history_month_sk(to_stored(cut - timedelta(microseconds=1)), 99, "A", "add")
    assert all(bound < key < next_bound for key in at_cut)
    assert just_before < bound
    assert expiry_month_sk(to_stored(cut), 2, "A") < history_month_sk(to_stored(cut), 2, "A", "remove")


def test_a_month_index_key_says_what_it_holds() -> None:
    at = to_stored(datetime(2023, 5, 4, 21, 0, 0, 5, tzinfo=UTC))
    assert month_sk_parts(history_month_sk(at, 1000, "AVITO_A.B-1", "remove")) == (
        at,
        1000,
        "AVITO_A.B-1",
        "remove",
    )
    assert month_sk_parts(expiry_month_sk(at, 7, "X")) == (at, 7, "X", None)


def test_the_sweeper_names_a_slice_as_its_worker_does() -> None:
    item = {"key": {"S": "reports/monthly/2023-05.csv"}, "run": {"S": "abc"}, "index": {"N": "3"}}
    assert due_job("report", item) == report_job("reports/monthly/2023-05.csv", "abc", 3)
    assert due_job("report", {"key": {"S": "k"}}) == {"kind": "report", "key": "k"}


@given(st.lists(st.integers(min_value=1, max_value=30 * MIB), min_size=1, max_size=30))
def test_upload_parts_hold_every_byte_once_in_order_and_all_but_the_last_are_big_enough(
    sizes: list[int],
) -> None:
    parts = [Part(f"p{number}", size) for number, size in enumerate(sizes)]
    plan = compose_plan(parts, copy_part=12 * MIB)
    ranges = [piece for upload in plan for piece in upload.ranges]
    # Every byte of every part, once, in order
    cursor = {part.key: 0 for part in parts}
    order = []
    for key, first, end in ranges:
        assert first == cursor[key] and end > first
        cursor[key] = end
        order.append(key)
    assert cursor == {part.key: part.size for part in parts}
    assert order == sorted(order, key=lambda key: int(key[1:]))
    # S3's rules: at least 5 MiB a part but the last, a copy is one range of at most 5 GiB
    for upload in plan[:-1]:
        assert sum(end - first for _, first, end in upload.ranges) >= 5 * MIB
    for upload in plan:
        if upload.copy:
            ((_, first, end),) = upload.ranges
            assert 5 * MIB <= end - first <= 12 * MIB
        else:
            assert sum(end - first for _, first, end in upload.ranges) <= 8 * MIB


def test_big_parts_are_copied_and_small_neighbours_sent_together() -> None:
    plan = compose_plan([Part("a", 1000), Part("b", 20 * MIB), Part("c", 10), Part("d", 20)])
    assert [(upload.copy, upload.ranges) for upload in plan] == [
        (False, [("a", 0, 1000), ("b", 0, 8 * MIB - 1000)]),
        (True, [("b", 8 * MIB - 1000, 20 * MIB)]),
        (False, [("c", 0, 10), ("d", 0, 20)]),
    ]
