"""DELETE is O(1) in members; members lose the segment in the background; a re-created slug is empty."""

import pytest

from dal.factory import get_store
from models.domain import MembershipRecord, MembershipState, MembershipWrite, UserUpdate
from shared.clock import utc_now
from tests.conftest import TABLE
from tests.support.api import Api
from tests.support.events import load_event
from tests.support.streams import StreamTap, deliver, template_filter


def _add_update(user: int, api: Api) -> UserUpdate:
    """A direct membership write, to build a big segment quickly."""
    segment = get_store().live_segments(["BIG"], consistent=True)["BIG"]
    record = MembershipRecord(user, "BIG", segment.generation, MembershipState.MEMBER, 1, utc_now())
    return UserUpdate([segment], [MembershipWrite(record, None)], [])


def run_cleanup(tap: StreamTap) -> int:
    """Deliver stream records to the clean-up function until it stops re-triggering itself."""
    rounds = 0
    accept = template_filter("CleanupMembersFunction")
    while records := [record for record in tap.new_records() if accept(record)]:
        assert deliver("stream_cleanup_members", records, batch_size=1) == [None] * len(records)
        rounds += 1
    return rounds


def test_recreated_slug_starts_empty_even_before_cleanup(seeded: Api) -> None:
    # Given a deleted segment whose members were not cleaned up yet
    assert seeded.delete_segment("AVITO_VOICE_MESSAGES").status == 204
    # When it is created again
    assert seeded.create_segment("AVITO_VOICE_MESSAGES").status == 201
    # Then none of the old members have it
    assert "AVITO_VOICE_MESSAGES" not in seeded.segments_of(1000)
    assert "AVITO_VOICE_MESSAGES" not in seeded.segments_of(1002)


def test_cleanup_turns_every_member_into_a_deletion_tombstone(seeded: Api) -> None:
    import boto3

    tap = StreamTap(TABLE)
    assert seeded.delete_segment("AVITO_VOICE_MESSAGES").status == 204
    assert run_cleanup(tap) >= 1
    items = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    voice = [item for item in items if item["sk"]["S"] == "SEG#AVITO_VOICE_MESSAGES"]
    assert {item["user_id"]["N"] for item in voice} == {"1000", "1002"}
    assert all(item["state"]["S"] == "removed" for item in voice)
    assert all(item["change_reason"]["S"] == "segment_deleted" for item in voice)
    generation = [item for item in items if item["sk"]["S"].startswith("GEN#")]
    assert generation[0]["cleanup"]["S"] == "done" and generation[0]["removed"]["N"] == "2"


def test_user_readded_after_recreate_keeps_the_new_membership_through_cleanup(seeded: Api) -> None:
    tap = StreamTap(TABLE)
    seeded.delete_segment("AVITO_VOICE_MESSAGES")
    seeded.create_segment("AVITO_VOICE_MESSAGES")
    assert seeded.change_user(1000, add=["AVITO_VOICE_MESSAGES"]).body["added"] == ["AVITO_VOICE_MESSAGES"]
    run_cleanup(tap)
    assert "AVITO_VOICE_MESSAGES" in seeded.segments_of(1000)
    assert "AVITO_VOICE_MESSAGES" not in seeded.segments_of(1002)


def test_delete_of_unknown_segment_is_404(api: Api) -> None:
    answer = api.delete_segment("NOPE")
    assert answer.status == 404
    assert answer.problem["status"] == 404


def test_cleanup_event_file_removes_the_members_of_generation_one(seeded: Api) -> None:
    # Given the seed scenario with AVITO_VOICE_MESSAGES deleted (generation 1)
    seeded.delete_segment("AVITO_VOICE_MESSAGES")
    # When the events/ file that `sam local invoke` takes is delivered to the clean-up function
    response = deliver(
        "stream_cleanup_members", load_event("stream_cleanup_members")["Records"], batch_size=1
    )
    # Then nothing failed, and a later re-creation cannot see old members even by their items
    assert response == [None]
    import boto3

    items = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    states = {
        item["user_id"]["N"]: item["state"]["S"]
        for item in items
        if item["sk"]["S"] == "SEG#AVITO_VOICE_MESSAGES"
    }
    assert states == {"1000": "removed", "1002": "removed"}


def test_large_segment_cleanup_continues_across_invocations(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a segment with 120 members and a clean-up that may only do one page per invocation
    import logic.cleanup

    api.create_segment("BIG")
    store = get_store()
    for user in range(1, 121):
        store.apply_user_update(_add_update(user, api), token=f"add-{user}")
    monkeypatch.setattr(logic.cleanup, "PAGE_SIZE", 10)
    monkeypatch.setattr(
        "handlers.stream_cleanup_members.SAFETY_MARGIN_MS", 10**9
    )  # no time: one page per call
    tap = StreamTap(TABLE)
    api.delete_segment("BIG")
    # When the stream keeps re-triggering the clean-up
    rounds = run_cleanup(tap)
    # Then every member was removed, over many invocations
    assert rounds > 5
    assert all(not api.segments_of(user) for user in (1, 2, 64, 120))
    import boto3

    items = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    assert sum(item.get("state", {}).get("S") == "removed" for item in items) == 120
