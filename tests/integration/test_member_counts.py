"""A segment's member counts (`members` in its answers): kept by the stream's reader, exact once it has
caught up, whatever is added, removed, opted out, expired, deleted or delivered twice."""

from datetime import UTC, datetime, timedelta

import pytest

from dal.history_store import RECORDS_PER_TRANSACTION
from tests.conftest import TABLE, indexes_caught_up
from tests.support.api import Api, call
from tests.support.background import Background, later
from tests.support.calls import counting_calls
from tests.support.streams import deliver


@pytest.fixture
def background(aws: None) -> Background:
    return Background(TABLE)


def members(api: Api, slug: str) -> tuple[int, int]:
    body = api.get_segment(slug).body
    return body["members"]["explicit"], body["members"]["opted_out"]


def test_a_new_segment_counts_nobody(api: Api) -> None:
    answer = api.create_segment("NEW")
    assert answer.body["members"]["explicit"] == answer.body["members"]["opted_out"] == 0
    assert answer.body["members"]["as_of"] == answer.body["created_at"]


def test_adds_and_removes_are_counted_once_the_stream_has_caught_up(api: Api, background: Background) -> None:
    api.create_segment("A")
    for user in range(1, 6):
        api.change_user(user, add=["A"])
    api.change_user(2, remove=["A"])
    api.change_user(3, add=["A"])  # already in: nothing changes
    assert members(api, "A") == (0, 0)  # nothing delivered yet
    background.settle()
    assert members(api, "A") == (4, 0)


def test_opt_outs_and_silent_adds_of_a_percentage_segment(api: Api, background: Background) -> None:
    api.create_segment("P", auto_percent=100)
    api.change_user(1, remove=["P"])  # out of the bucket: an opt-out
    api.change_user(2, add=["P"])  # in by the bucket already: a silent explicit membership
    api.change_user(1, add=["P"])  # the opt-out becomes a membership
    api.change_user(3, remove=["P"])
    background.settle()
    assert members(api, "P") == (2, 1)


def test_expiries_are_counted_when_the_sweeper_ends_them(api: Api, background: Background) -> None:
    api.create_segment("E")
    api.change_user(1, add=[{"slug": "E", "ttl_seconds": 60}])
    api.change_user(2, add=["E"])
    background.settle()
    assert members(api, "E") == (2, 0)
    indexes_caught_up()  # the sweeper finds expiries in the month index
    with later(timedelta(minutes=2)):
        assert background.sweep()["expired"] == 1
    background.settle()
    assert members(api, "E") == (1, 0)
    assert api.segments_of(1) == []


def test_a_deleted_slug_comes_back_counting_nobody(api: Api, background: Background) -> None:
    api.create_segment("D")
    api.change_user(1, add=["D"])
    background.settle()
    api.delete_segment("D")
    api.create_segment("D")
    background.finish()
    assert members(api, "D") == (0, 0)
    api.change_user(2, add=["D"])
    background.settle()
    assert members(api, "D") == (1, 0)


def test_duplicate_deliveries_count_once(api: Api, background: Background) -> None:
    api.create_segment("TWICE")
    for user in range(1, 4):
        api.change_user(user, add=["TWICE"])
    api.change_user(1, remove=["TWICE"])
    records = [record for record in background.tap.new_records() if background.accept(record)]
    deliver("stream_table", records, batch_size=100)
    deliver("stream_table", records, batch_size=100)  # the whole batch again
    deliver("stream_table", records[::-1], batch_size=2)  # overlapping, out of order
    assert members(api, "TWICE") == (2, 0)


def test_a_batch_of_applied_and_new_records_applies_each_new_one_once(
    api: Api, background: Background
) -> None:
    """Records are applied several to a transaction: one applied before must not hold the others back,
    nor let them count twice."""
    api.create_segment("MIXED")
    for user in range(1, 61):
        api.change_user(user, add=["MIXED"])
    records = [record for record in background.tap.new_records() if background.accept(record)]
    deliver("stream_table", records[::3], batch_size=100)  # a third of them, applied first
    deliver("stream_table", records, batch_size=100)  # then every record, those among them too
    assert members(api, "MIXED") == (60, 0)
    indexes_caught_up()
    report = call("api_history_report", query={"period": datetime.now(UTC).strftime("%Y-%m")})
    assert report.body["rows"] == 60  # one history row each


def test_a_batch_delivered_again_costs_a_read_and_a_transaction_a_group_not_one_a_record(
    api: Api, background: Background
) -> None:
    """Lambda sends a whole batch again when any of it failed: the records applied before must be told
    apart in one consistent read a group, not found one failed transaction at a time."""
    api.create_segment("AGAIN")
    for user in range(1, 61):
        api.change_user(user, add=["AGAIN"])
    records = [record for record in background.tap.new_records() if background.accept(record)]
    groups = -(-len(records) // RECORDS_PER_TRANSACTION)  # 60 single-row records: 3 groups
    deliver("stream_table", records[:30], batch_size=100)  # the first group and part of the second
    # When the whole batch is delivered again
    with counting_calls() as calls:
        deliver("stream_table", records, batch_size=100)
    # Then each group is tried once, read once where it held an applied record, and its rest applied once
    assert calls["BatchGetItem"] == 2  # the groups holding applied records
    assert calls["TransactWriteItems"] == groups + 1  # each group tried once, the half-applied one again
    assert members(api, "AGAIN") == (60, 0)
    indexes_caught_up()
    report = call("api_history_report", query={"period": datetime.now(UTC).strftime("%Y-%m")})
    assert report.body["rows"] == 60


def test_lists_and_patches_show_the_counts(api: Api, background: Background) -> None:
    api.create_segment("L1")
    api.create_segment("L2")
    api.change_user(1, add=["L1", "L2"])
    api.change_user(2, add=["L2"])
    background.settle()
    indexes_caught_up()
    listed = {
        segment["slug"]: segment["members"]["explicit"] for segment in api.list_segments().body["segments"]
    }
    assert listed == {"L1": 1, "L2": 2}
    assert api.patch_segment("L2", description="two").body["members"]["explicit"] == 2


def test_an_opt_out_outlives_the_end_of_the_percentage_and_a_later_remove(
    api: Api, background: Background
) -> None:
    # Given user 3 opted out of B while it had a percentage, then B's percentage ended
    api.create_segment("B", auto_percent=10)
    api.change_user(3, remove=["B"])
    assert api.patch_segment("B", auto_percent=None).status == 200
    # When user 3 is removed from B again (found by a 25,000-step soak: the model dropped the opt-out)
    answer = api.change_user(3, remove=["B"])
    # Then nothing changes: the opt-out is still stored and counted, and a ramp keeps user 3 out
    assert answer.body["removed"] == [] and answer.body["unchanged"] == ["B"], answer.body
    background.settle()
    assert members(api, "B") == (0, 1)
    assert api.patch_segment("B", auto_percent=100).status == 200
    assert "B" not in api.segments_of(3)


def test_the_sweeper_ends_an_expiry_that_comes_during_its_run(
    api: Api, background: Background, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ExpirySweepSeconds the sweeper does not wait for its next run to end an expiry."""
    import handlers.scheduled_sweeper
    from shared.settings import get_settings

    monkeypatch.setenv("EXPIRY_SWEEP_SECONDS", "1")
    monkeypatch.setattr(handlers.scheduled_sweeper, "EXPIRY_SWEEPS_FOR_SECONDS", 5)
    get_settings.cache_clear()
    try:
        api.create_segment("SOON")
        api.change_user(1, add=[{"slug": "SOON", "ttl_seconds": 1}])
        background.settle()
        assert members(api, "SOON") == (1, 0)
        assert background.sweep()["expired"] == 1  # not expired when the run began; ended during it
    finally:
        get_settings.cache_clear()
    background.settle()
    assert members(api, "SOON") == (0, 0)
