"""Falsifying sequences the stateful model (test_stateful_model.py) found, kept as explicit steps.

Each test replays hypothesis's shrunk sequence through the same Machine, rule by rule, so a fix
cannot regress without this file failing, whatever hypothesis happens to draw next time.
"""

from collections.abc import Iterator

import pytest

from tests.integration.test_stateful_model import Machine


@pytest.fixture
def state() -> Iterator[Machine]:
    machine = Machine()
    yield machine
    machine.teardown()


def test_an_explicit_expiry_the_bucket_still_covers_writes_no_row_in_either_report(state: Machine) -> None:
    """User 2 was in G2 by bucket, got a silent explicit add with an expiry, and the expiry passed while
    the bucket still held them: they never left G2, so neither report may show a remove and re-add."""
    state.clock_reaches_handlers(plain=[], grouped=[None, 100, None])  # Z0, NEVER, G2 (100 %)
    state.change(adds=[], removes=["G2"], user=3)
    state.patch(description=False, percent=50, slug="G2")
    state.patch(description=True, percent=None, slug="G2")
    state.patch(description=True, percent=None, slug="G2")
    state.patch(description=True, percent=0, slug="NEVER")
    state.report_everyone(cleanup=True)
    state.patch(description=True, percent=10, slug="G2")
    state.change(adds=[("G2", ("expires_at", 2))], removes=["Z0"], user=2)
    state.patch(description=True, percent=10, slug="G2")
    state.report_everyone(cleanup=False)


def test_an_expired_explicit_membership_re_added_while_the_bucket_covers_the_user_keeps_its_expiry(
    state: Machine,
) -> None:
    """The related case of the percentage issue: user 1 is explicitly in A (0 %) until an expiry that
    DynamoDB has not acted on; A then ramps to 100 % and user 1 is added again (silently, the bucket
    holds them). The expiry, when the bucket did not hold them, must stay in the history."""
    state.clock_reaches_handlers(plain=[0], grouped=[])  # Z0, NEVER, A (0 %)
    state.change(adds=[("A", ("expires_at", 2))], removes=[], user=1)
    state.advance(seconds=29)
    state.patch(description=False, percent=100, slug="A")
    state.change(adds=[("A", None)], removes=[], user=1)
    state.report(user=1)
    state.patch(description=False, percent=0, slug="A")
    state.report(user=1)


def test_an_opt_out_over_an_expired_membership_keeps_the_expiry_and_the_opt_out(state: Machine) -> None:
    """User 1's explicit membership of A (0 %) expired unseen; A ramps to 100 % and user 1 is removed:
    the report must show the expiry, the auto entry and the manual remove."""
    state.clock_reaches_handlers(plain=[0], grouped=[])
    state.change(adds=[("A", ("expires_at", 2))], removes=[], user=1)
    state.advance(seconds=29)
    state.patch(description=False, percent=100, slug="A")
    state.change(adds=[], removes=["A"], user=1)
    state.report(user=1)
    state.report_everyone(cleanup=False)


def test_an_explicit_membership_that_outlives_the_bucket_expires_with_one_row(state: Machine) -> None:
    """A silent explicit add under the bucket, a lowering that leaves the user in explicitly, then the
    expiry: now the user leaves, with exactly one ttl_expired row in both reports."""
    state.clock_reaches_handlers(plain=[100], grouped=[])
    state.change(adds=[("A", ("ttl_seconds", 30))], removes=[], user=2)
    state.patch(description=False, percent=0, slug="A")
    state.advance(seconds=60)
    state.report(user=2)
    state.report_everyone(cleanup=True)


def test_imports_follow_the_model_with_their_counts_and_history(state: Machine) -> None:
    """Not a found sequence: the import rule's cases in one run (add with a TTL under a bucket, bad and
    duplicate lines, a remove into an opt-out, a remove of a plain segment, an expiry), every count
    and report checked against the model."""
    state.clock_reaches_handlers(plain=[None, 50], grouped=[])  # Z0, NEVER, A (plain), B (50 %)
    state.change(adds=[("A", None)], removes=[], user=4)
    state.import_users(slug="B", remove=False, life=("ttl_seconds", 30), header=True,
                       lines=["1", "2", "x", "2", "", "3", "01", "4", "5"])  # fmt: skip
    state.import_users(slug="A", remove=False, life=None, header=False, lines=["4", "5", "5", "-1"])
    state.report_everyone(cleanup=True)
    state.import_users(slug="B", remove=True, life=None, header=False, lines=["1", "2", "3"])
    state.import_users(slug="A", remove=True, life=None, header=True, lines=["4", " ", "1"])
    state.advance(seconds=60)
    state.import_users(slug="NEVER", remove=False, life=None, header=False, lines=["1"])
    state.import_users(slug="A", remove=True, life=("ttl_seconds", 30), header=False, lines=["1"])
    state.report_everyone(cleanup=True)
    for user in range(1, 6):
        state.report(user=user)


def test_an_import_with_a_past_expiry_of_a_segment_that_does_not_exist_is_400(state: Machine) -> None:
    """A soak found it (seed 72162213): the body is checked before the segment is looked up, as for a
    user's change (docs/api.md), so an expiry that is not in the future is 400 even for an unknown slug."""
    state.clock_reaches_handlers(plain=[None], grouped=[None])  # Z0, NEVER, A (G1 needs a percentage)
    state.delete(cleanup=True, slug="A")
    state.create(percent=100, slug="C")
    state.report(user=5)
    state.patch(description=False, percent=0, slug="C")
    state.patch(description=True, percent=10, slug="C")
    state.report_everyone(cleanup=True)
    state.change(adds=[], removes=[], user=5)
    state.delete(cleanup=True, slug="Z0")
    state.create_in_group(percent=10, slug="G1")
    state.import_users(header=False, life=("expires_at", 0), lines=["x"], remove=False, slug="NEVER")


def test_an_expiry_swept_after_its_segment_was_deleted_is_the_deletion(state: Machine) -> None:
    """A 50,000-step soak found it (seed 723868317): user 4 is in G1 by bucket and, silently, by hand
    until 90 s later; G1 is deleted a second after, before the clean-up's index shows user 4; the
    expiry passes and the sweeper ends the membership before the clean-up's second walk. It ended at
    the deletion: `segment_deleted` then, not `ttl_expired` 90 s later."""
    state.clock_reaches_handlers(plain=[], grouped=[50, 0, 25])  # Z0, NEVER, G1, G2, G3
    state.change(adds=[], removes=["G3"], user=3)
    state.report(user=1)
    state.create(percent=50, slug="C")
    state.create(percent=None, slug="B")
    state.report(user=2)
    state.report(user=4)
    state.delete(cleanup=False, slug="G2")
    state.change(adds=[("G1", ("ttl_seconds", 90)), ("Z0", None)], removes=[], user=4)
    state.delete(cleanup=True, slug="G1")
    state.report(user=5)
    state.report(user=4)


def test_a_user_added_just_before_a_deletion_leaves_at_the_deletion_in_their_report_at_once(
    state: Machine,
) -> None:
    """A 50,000-step soak found it (seed 1107662722, by an import): user 2 is added to A a second before
    A is deleted, so the clean-up's first walk does not see them in the index; until its second walk,
    two minutes later, their report showed them in A. It derives the deletion's row at once now; the
    all-users report has it once the clean-up has stored it."""
    state.clock_reaches_handlers(plain=[None], grouped=[None])  # Z0, NEVER, A
    state.create(percent=None, slug="D")
    state.advance(seconds=1)
    state.import_users(header=False, life=None, lines=["", "5", "2", "01", "2"], remove=False, slug="A")
    state.delete(cleanup=True, slug="A")
    state.change(adds=[("D", None)], removes=[], user=3)
    state.delete(cleanup=True, slug="D")  # a hand-made member's deletion, the same way
    state.report_everyone(cleanup=False)
    state.report_everyone(cleanup=True)


def test_an_expiry_after_its_segment_was_deleted_is_no_line_of_either_report(state: Machine) -> None:
    """CI's soak found it (seed 1775786962): user 2, in G2 by bucket, is imported into it with an
    expiry 2 s on; G2 is deleted a second later, before the clean-up can see the import's write. Until
    the clean-up's second walk, the reports derived the unswept expiry, a removal after the user had
    left at the deletion."""
    state.clock_reaches_handlers(plain=[None, None, None], grouped=[None])  # Z0, NEVER, A, B, C
    state.import_users(header=False, life=None, lines=["3"], remove=False, slug="C")
    state.read(user=2)
    state.delete(cleanup=False, slug="NEVER")
    state.import_users(
        header=False, life=("ttl_seconds", 90), lines=["3", "x", "1", "2"], remove=False, slug="C"
    )
    state.create_in_group(percent=50, slug="G2")
    state.delete(cleanup=True, slug="B")
    state.import_users(header=True, life=("expires_at", 2), lines=["3", " ", "5", "4", "-1", "01", "2", "4"],
                       remove=False, slug="G2")  # fmt: skip
    state.delete(cleanup=True, slug="G2")
    state.patch(description=False, percent=50, slug="NEVER")
    state.patch(description=True, percent=10, slug="B")
    state.patch(description=False, percent=None, slug="A")
    state.report_everyone(cleanup=False)
    state.report_everyone(cleanup=True)


def test_a_new_table_knows_no_deletion_of_the_one_before() -> None:
    """A 50,000-step soak found it (seed 2024882650): each example is a new table, but the stream
    reader's container kept the deletion times it had read, so A's generation 1, deleted in one
    example, was 'deleted' in the next, and an expiry the sweeper ended there became segment_deleted.
    (Deployed, a container only ever serves one table, whose deletions never change.)"""
    before = Machine()
    try:
        before.clock_reaches_handlers(plain=[50], grouped=[])  # Z0, NEVER, A (50 %)
        before.change(adds=[("A", ("expires_at", 45.5))], removes=[], user=1)
        before.delete(cleanup=True, slug="A")
        before.report(user=1)  # the sweeper ends the expiry: the reader reads A's deletion
    finally:
        before.teardown()
    state = Machine()
    try:
        state.clock_reaches_handlers(plain=[50], grouped=[None])
        state.change(adds=[("Z0", None), ("A", ("expires_at", 45.5))], removes=[], user=1)
        state.report(user=1)
    finally:
        state.teardown()
