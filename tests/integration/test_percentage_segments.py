"""Percentage segments through the API: ranges, ramps, exclusion groups, opt-outs and the rule log."""

import threading
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import Any

import boto3

from dal.factory import get_history_store, get_store
from logic.buckets import bucket_of
from models.domain import Operation, Reason
from shared.clock import utc_now
from tests.conftest import TABLE, indexes_caught_up
from tests.integration.test_history_and_reports import History, rows_of
from tests.support.api import Answer, Api

USERS = range(1, 201)


def members(api: Api, slug: str, users: range = USERS) -> set[int]:
    return {user for user in users if slug in api.segments_of(user)}


def user_with_bucket(seed: str, low: int, high: int) -> int:
    return next(user for user in range(1, 1_000_000) if low <= bucket_of(seed, user) < high)


def created(api: Api, slug: str, **fields: Any) -> dict[str, Any]:
    answer = api.create_segment(slug, **fields)
    assert answer.status == 201, answer
    return dict(answer.body)


def test_a_percentage_segment_holds_exactly_the_users_whose_bucket_is_in_range(api: Api) -> None:
    body = created(api, "VOICE", auto_percent=10)
    assert body["auto_percent"] == 10 and body["bucket_range"] == [0, 0.1]
    assert members(api, "VOICE") == {user for user in USERS if bucket_of("VOICE", user) < 1000}


def test_details_show_bucketed_membership_as_auto(api: Api) -> None:
    created(api, "VOICE", auto_percent=50)
    user = user_with_bucket("VOICE", 0, 5000)
    details = api.user_segments(user, details=True).body["memberships"]
    assert details == [{"slug": "VOICE", "source": "auto", "added_at": None, "expires_at": None}]


def test_ramps_through_the_api_only_add_when_raised_and_only_remove_the_top_when_lowered(api: Api) -> None:
    created(api, "RAMP", auto_percent=5)
    seen = [members(api, "RAMP")]
    for percent in (10, 25.5, 50):
        assert api.patch_segment("RAMP", auto_percent=percent).status == 200
        seen.append(members(api, "RAMP"))
    assert all(before <= after for before, after in pairwise(seen))
    assert api.patch_segment("RAMP", auto_percent=20).body["bucket_range"] == [0, 0.2]
    lowered = members(api, "RAMP")
    assert lowered <= seen[-1]
    assert seen[-1] - lowered == {user for user in seen[-1] if bucket_of("RAMP", user) >= 2000}


def test_patch_sets_a_rule_on_a_manual_segment_and_null_ends_it(api: Api) -> None:
    created(api, "LATER")
    assert api.patch_segment("LATER", auto_percent=30).body["bucket_range"] == [0, 0.3]
    inside = user_with_bucket("LATER", 0, 3000)
    assert api.segments_of(inside) == ["LATER"]
    ended = api.patch_segment("LATER", auto_percent=None).body
    assert ended["auto_percent"] is None and ended["bucket_range"] is None
    assert api.segments_of(inside) == []


# --- exclusion groups -------------------------------------------------------------------------


def test_group_members_take_the_lowest_gap_grow_upward_trim_and_free_on_delete(api: Api) -> None:
    group = {"exclusion_group": "discounts"}
    assert created(api, "D30", auto_percent=30, **group)["bucket_range"] == [0, 0.3]
    assert created(api, "D20", auto_percent=20, **group)["bucket_range"] == [0.3, 0.5]
    assert created(api, "D10", auto_percent=10, **group)["bucket_range"] == [0.5, 0.6]
    assert api.delete_segment("D20").status == 204
    # The freed gap [0.3, 0.5) is the lowest that fits a new 15 %
    assert created(api, "D15", auto_percent=15, **group)["bucket_range"] == [0.3, 0.45]
    # D10 grows upward into the free space right above it; lowering trims the top
    assert api.patch_segment("D10", auto_percent=40).body["bucket_range"] == [0.5, 0.9]
    assert api.patch_segment("D10", auto_percent=5).body["bucket_range"] == [0.5, 0.55]


def test_no_fitting_gap_is_409_with_the_largest_free_gap(api: Api) -> None:
    group = {"exclusion_group": "g"}
    created(api, "A", auto_percent=60, **group)
    created(api, "B", auto_percent=15.5, **group)
    answer = api.create_segment("C", auto_percent=30, **group)
    assert answer.status == 409
    assert answer.problem["free_percent"] == 24.5 and answer.problem["exclusion_group"] == "g"
    assert api.get_segment("C").status == 404  # a rejected request writes nothing


def test_a_raise_that_does_not_fit_above_is_409_with_what_the_segment_could_grow_to(api: Api) -> None:
    group = {"exclusion_group": "g"}
    created(api, "A", auto_percent=10, **group)
    created(api, "B", auto_percent=50, **group)
    answer = api.patch_segment("A", auto_percent=20)
    assert answer.status == 409 and answer.problem["free_percent"] == 10
    assert api.get_segment("A").body["bucket_range"] == [0, 0.1]


def test_a_grouped_segment_cannot_drop_its_percentage(api: Api) -> None:
    created(api, "A", auto_percent=10, exclusion_group="g")
    answer = api.patch_segment("A", auto_percent=None)
    assert answer.status == 400 and answer.problem["errors"][0]["field"] == "auto_percent"
    assert api.patch_segment("A", exclusion_group="h").status == 400


def test_no_user_is_in_two_segments_of_one_group_through_buckets(api: Api) -> None:
    group = {"exclusion_group": "discounts"}
    for slug, percent in [("D30", 30), ("D50", 50), ("D15", 15)]:
        created(api, slug, auto_percent=percent, **group)
    counts = [len(api.segments_of(user)) for user in range(1, 1001)]
    assert max(counts) == 1
    # 95 % of the group's buckets are taken: about 95 % of users are in exactly one
    assert 0.93 < sum(counts) / len(counts) < 0.97


def test_concurrent_creates_in_one_group_never_overlap(api: Api) -> None:
    start = threading.Barrier(12)

    def create(n: int) -> Answer:
        start.wait()
        for _ in range(20):
            answer = api.create_segment(f"C{n:02d}", auto_percent=10, exclusion_group="race")
            if answer.status != 503:
                return answer
        raise AssertionError("still busy")

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(create, range(12)))
    statuses = sorted(answer.status for answer in answers)
    assert statuses == [201] * 10 + [409] * 2
    ranges = sorted(tuple(answer.body["bucket_range"]) for answer in answers if answer.status == 201)
    assert ranges == [(n / 10, (n + 1) / 10) for n in range(10)]
    assert all(answer.problem["free_percent"] == 0 for answer in answers if answer.status == 409)


def test_concurrent_raises_in_one_group_never_overlap(api: Api) -> None:
    created(api, "LOW", auto_percent=10, exclusion_group="g")
    created(api, "HIGH", auto_percent=10, exclusion_group="g")  # [0.1, 0.2)
    api.delete_segment("LOW")
    created(api, "LOW", auto_percent=5, exclusion_group="g")  # [0, 0.05), room above up to 0.1

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(
            pool.map(
                lambda args: api.patch_segment(args[0], auto_percent=args[1]), [("LOW", 10), ("HIGH", 90)]
            )
        )
    assert all(answer.status in (200, 409, 503) for answer in answers)
    low = api.get_segment("LOW").body["bucket_range"]
    high = api.get_segment("HIGH").body["bucket_range"]
    assert low[1] <= high[0]


# --- manual changes win ----------------------------------------------------------------------


def test_remove_opts_a_bucketed_user_out_through_later_ramps_and_add_brings_them_back(api: Api) -> None:
    created(api, "VOICE", auto_percent=20)
    user = user_with_bucket("VOICE", 0, 1000)
    assert api.change_user(user, remove=["VOICE"]).body["removed"] == ["VOICE"]
    api.patch_segment("VOICE", auto_percent=100)
    assert api.segments_of(user) == []
    assert api.change_user(user, add=["VOICE"]).body["added"] == ["VOICE"]
    api.patch_segment("VOICE", auto_percent=0)
    assert api.segments_of(user) == ["VOICE"]


def test_an_opt_out_of_a_user_the_bucket_left_out_is_unchanged_and_holds_after_a_raise(api: Api) -> None:
    created(api, "VOICE", auto_percent=10)
    user = user_with_bucket("VOICE", 5000, 6000)
    assert api.change_user(user, remove=["VOICE"]).body["unchanged"] == ["VOICE"]
    api.patch_segment("VOICE", auto_percent=80)
    assert api.segments_of(user) == []


def test_adding_a_bucketed_user_is_unchanged_and_keeps_them_in_after_lowering(api: Api) -> None:
    created(api, "VOICE", auto_percent=50)
    user = user_with_bucket("VOICE", 2000, 5000)
    body = api.change_user(user, add=["VOICE"]).body
    assert body["unchanged"] == ["VOICE"] and body["added"] == []
    api.patch_segment("VOICE", auto_percent=10)
    assert api.segments_of(user) == ["VOICE"]
    assert api.user_segments(user, details=True).body["memberships"][0]["source"] == "manual"


# --- the rule log and silent changes, as per-user history reads them ---------------------------


def test_every_range_change_and_every_deletion_is_in_the_rule_log(api: Api) -> None:
    created(api, "VOICE", auto_percent=10)
    api.patch_segment("VOICE", description="only words")  # no rule change
    api.patch_segment("VOICE", auto_percent=20)
    api.delete_segment("VOICE")
    created(api, "PLAIN")
    api.delete_segment("PLAIN")
    store = get_store()
    changes = [
        (c.slug, c.generation, c.bucket_start, c.bucket_end, c.deleted)
        for c in store.rule_changes_of(["VOICE", "PLAIN"])
    ]
    assert changes == [
        ("VOICE", 1, 0, 1000, False),
        ("VOICE", 1, 0, 2000, False),
        ("VOICE", 1, None, None, True),
        ("PLAIN", 1, None, None, True),
    ]
    # and the month's index names both (once it has caught up), for the reports of earlier months
    indexes_caught_up()
    assert store.slugs_with_rule_changes([utc_now().strftime("%Y-%m")]) == {"VOICE", "PLAIN"}


def test_a_silent_add_is_stored_history_that_no_report_shows_and_the_replay_honours(api: Api) -> None:
    # Given a bucketed user made explicit with an expiry (no report line), then a lowering below their bucket
    history = History()
    created(api, "VOICE", auto_percent=50)
    user = user_with_bucket("VOICE", 2000, 5000)
    assert api.change_user(user, add=[{"slug": "VOICE", "ttl_seconds": 3600}]).body["unchanged"] == ["VOICE"]
    api.patch_segment("VOICE", auto_percent=10)
    # Then the add is a silent row of the user's history, outside every month of the all-users report
    history.process()
    stored = list(get_history_store().user_until(user, "9999"))
    assert [(row.operation, row.reason, row.silent) for row in stored] == [
        (Operation.ADD, Reason.MANUAL, True)
    ]
    # And the membership still expires by DynamoDB's TTL: a silent change never keeps an item forever
    item = boto3.client("dynamodb").get_item(
        TableName=TABLE, Key={"pk": {"S": f"USER#{user}"}, "sk": {"S": "SEG#VOICE"}}
    )["Item"]
    assert "ttl" in item and "gsi2pk" in item
    # And the user's report has the entry at creation and no exit at the lowering; nobody else's shows it
    _, text = history.report(user_id=user)
    assert [row[1:] for row in rows_of(text)] == [("VOICE", "add", "auto")]
    _, everyone = history.report()
    assert rows_of(everyone) == []
    # And a later opt-out is a visible remove
    assert api.change_user(user, remove=["VOICE"]).body["removed"] == ["VOICE"]
    _, text = history.report(user_id=user)
    assert [row[1:] for row in rows_of(text)] == [("VOICE", "add", "auto"), ("VOICE", "remove", "manual")]
