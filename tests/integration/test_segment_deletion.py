"""DELETE is O(1) in members; the members lose the segment in the background, and a re-created slug is empty."""

from tests.conftest import TABLE
from tests.support.api import Api
from tests.support.streams import StreamTap, deliver, template_filter


def run_cleanup(tap: StreamTap) -> int:
    """Deliver stream records to the clean-up function until it stops re-triggering itself."""
    rounds = 0
    accept = template_filter("CleanupMembersFunction")
    while records := [record for record in tap.new_records() if accept(record)]:
        for response in deliver("stream_cleanup_members", records):
            assert response == {"batchItemFailures": []}
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
