"""DELETE is O(1) in members; members lose the segment in the background, in a clean-up job that walks
the members index twice; a re-created slug is empty."""

import json
import random
import threading
from typing import Any

import boto3
import pytest

from dal.factory import get_store
from models.domain import MEMBER_SHARDS, MembershipRecord, MembershipState, MembershipWrite, UserUpdate
from shared.clock import utc_now
from tests.conftest import TABLE, indexes_caught_up, indexes_held
from tests.support.api import Api
from tests.support.background import LATER, Background, later
from tests.support.events import load_event


def _add_update(user: int) -> UserUpdate:
    """A direct membership write, to build a big segment quickly."""
    segment = get_store().live_segments(["BIG"], consistent=True)["BIG"]
    record = MembershipRecord(user, "BIG", segment.generation, MembershipState.MEMBER, 1, utc_now())
    return UserUpdate([segment], [MembershipWrite(record, None)], [])


def items_of(sk: str) -> list[dict[str, Any]]:
    items = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    return [item for item in items if item["sk"]["S"] == sk]


def generation_item(slug: str) -> dict[str, Any]:
    (item,) = [item for item in items_of("GEN#0000000001") if item["pk"]["S"] == f"SEGMENT#{slug}"]
    return item


@pytest.fixture
def background(aws: None) -> Background:
    return Background(TABLE)


def test_recreated_slug_starts_empty_even_before_cleanup(seeded: Api) -> None:
    # Given a deleted segment whose members were not cleaned up yet
    assert seeded.delete_segment("AVITO_VOICE_MESSAGES").status == 204
    # When it is created again
    assert seeded.create_segment("AVITO_VOICE_MESSAGES").status == 201
    # Then none of the old members have it
    assert "AVITO_VOICE_MESSAGES" not in seeded.segments_of(1000)
    assert "AVITO_VOICE_MESSAGES" not in seeded.segments_of(1002)


def test_cleanup_turns_every_member_into_a_deletion_tombstone(seeded: Api, background: Background) -> None:
    background.settle()
    assert seeded.delete_segment("AVITO_VOICE_MESSAGES").status == 204
    background.finish()
    voice = items_of("SEG#AVITO_VOICE_MESSAGES")
    assert {item["user_id"]["N"] for item in voice} == {"1000", "1002"}
    assert all(item["state"]["S"] == "removed" for item in voice)
    assert all(item["change_reason"]["S"] == "segment_deleted" for item in voice)
    generation = generation_item("AVITO_VOICE_MESSAGES")
    assert generation["cleanup"]["S"] == "done" and generation["removed"]["N"] == "2"
    assert "gsi1pk" not in generation  # out of the jobs index: the sweeper never sends it again


def test_a_member_the_index_does_not_show_yet_is_cleaned_by_the_second_walk(
    api: Api, background: Background
) -> None:
    # Given a member written a moment before the delete, which the lagging members index misses
    with indexes_held():
        api.create_segment("LATE")
        api.change_user(7, add=["LATE"])
        assert api.delete_segment("LATE").status == 204
        # When the clean-up job runs at once, its first walk finds nobody, and it waits for its second walk
        background.settle()
    assert items_of("SEG#LATE")[0]["state"]["S"] == "member"
    assert generation_item("LATE")["cleanup"]["S"] == "pending"
    assert background.sweep()["cleanup"] == 0  # not due yet
    # Then once the wait is over, the sweeper sends it again and the second walk ends the member
    indexes_caught_up()
    with later(LATER):
        assert background.sweep()["cleanup"] == 1
        background.settle()
    assert items_of("SEG#LATE")[0]["state"]["S"] == "removed"
    assert generation_item("LATE")["cleanup"]["S"] == "done"


def test_user_readded_after_recreate_keeps_the_new_membership_through_cleanup(
    seeded: Api, background: Background
) -> None:
    seeded.delete_segment("AVITO_VOICE_MESSAGES")
    seeded.create_segment("AVITO_VOICE_MESSAGES")
    assert seeded.change_user(1000, add=["AVITO_VOICE_MESSAGES"]).body["added"] == ["AVITO_VOICE_MESSAGES"]
    background.finish()
    assert "AVITO_VOICE_MESSAGES" in seeded.segments_of(1000)
    assert "AVITO_VOICE_MESSAGES" not in seeded.segments_of(1002)


def test_delete_of_unknown_segment_is_404(api: Api) -> None:
    answer = api.delete_segment("NOPE")
    assert answer.status == 404
    assert answer.problem["status"] == 404


def test_cleanup_event_file_runs_the_job_of_generation_one(seeded: Api) -> None:
    # Given the seed scenario with AVITO_VOICE_MESSAGES deleted (generation 1), whose members the index shows
    seeded.delete_segment("AVITO_VOICE_MESSAGES")
    indexes_caught_up()
    # When the events/ file that `sam local invoke` takes is given to the clean-up worker
    from handlers.queue_cleanup import lambda_handler
    from tests.support.api import FakeContext

    response = lambda_handler(load_event("queue_cleanup"), FakeContext())
    # Then nothing failed, and the members were ended (the job now waits for its second walk)
    assert response == {"batchItemFailures": []}
    states = {item["user_id"]["N"]: item["state"]["S"] for item in items_of("SEG#AVITO_VOICE_MESSAGES")}
    assert states == {"1000": "removed", "1002": "removed"}


def test_large_segment_cleanup_continues_across_invocations(
    api: Api, background: Background, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a segment with 120 members and a clean-up that may only do one page per invocation
    import logic.cleanup

    api.create_segment("BIG")
    store = get_store()
    for user in range(1, 121):
        store.apply_user_update(_add_update(user), token=f"add-{user}")
    monkeypatch.setattr(logic.cleanup, "PAGE_SIZE", 10)
    monkeypatch.setattr("handlers.queue_cleanup.SAFETY_MARGIN_MS", 10**9)  # no time: one page per call
    indexes_caught_up()
    api.delete_segment("BIG")
    # When the job keeps sending itself on
    background.stream()
    runs = background.jobs("cleanup")
    # Then every member was removed, over many invocations
    assert runs > 5
    assert all(not api.segments_of(user) for user in (1, 2, 64, 120))
    assert sum(item["state"]["S"] == "removed" for item in items_of("SEG#BIG")) == 120


def test_adds_racing_a_delete_all_end_with_their_history(api: Api, background: Background) -> None:
    """Users are added from several threads while the segment is deleted: whatever committed before
    or just after the deletion is cleaned by the job, with one segment_deleted row each, however far
    the index lagged."""
    from tests.integration.test_history_and_reports import History, rows_of

    history = History()
    rng = random.Random(5)
    for round_number in range(3):
        slug = f"RACED{round_number}"
        api.create_segment(slug)
        users = rng.sample(range(1, 10_000), 40)
        answers: dict[int, int] = {}

        threads = [
            threading.Thread(target=_add_each, args=(users[index::4], slug, answers)) for index in range(4)
        ]
        for thread in threads:
            thread.start()
        assert api.delete_segment(slug).status == 204
        for thread in threads:
            thread.join()
        assert set(answers.values()) <= {200, 404}
        background.finish()
        added = {user for user, status in answers.items() if status == 200}
        assert {int(item["user_id"]["N"]) for item in items_of(f"SEG#{slug}")} == added
        assert all(item["state"]["S"] == "removed" for item in items_of(f"SEG#{slug}"))
        _, text = history.report()
        ended = {int(user) for user, row_slug, operation, reason in rows_of(text) if row_slug == slug}
        assert ended == added
        removals = [row for row in rows_of(text) if row[1] == slug and row[2] == "remove"]
        assert len(removals) == len(added) and {row[3] for row in removals} <= {"segment_deleted"}
        indexes_caught_up()


def _add_each(users: list[int], slug: str, answers: dict[int, int]) -> None:
    for user in users:
        answers[user] = Api().change_user(user, add=[slug]).status


def test_a_failing_cleanup_job_waits_whole_in_its_dead_letter_queue_and_a_redrive_completes_it(
    seeded: Api, background: Background, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a clean-up whose store fails every time
    background.settle()
    indexes_caught_up()
    seeded.delete_segment("AVITO_VOICE_MESSAGES")
    store = get_store()
    monkeypatch.setattr(type(store), "members_page", lambda *args, **kwargs: 1 / 0)
    background.stream()
    background.jobs("cleanup")
    # Then after five receives it sits whole in the dead-letter queue, and the sweeper leaves it there
    (dead,) = background.dead_letters("cleanup")
    assert json.loads(dead["Body"]) == {"kind": "cleanup", "slug": "AVITO_VOICE_MESSAGES", "generation": 1}
    assert generation_item("AVITO_VOICE_MESSAGES")["cleanup"]["S"] == "failed"
    with later(LATER):
        assert background.sweep()["cleanup"] == 0
    # When the fault is mended and the dead-letter queue redriven
    monkeypatch.undo()
    assert background.redrive("cleanup") == 1
    background.finish()
    # Then the job completed
    assert generation_item("AVITO_VOICE_MESSAGES")["cleanup"]["S"] == "done"
    assert {item["state"]["S"] for item in items_of("SEG#AVITO_VOICE_MESSAGES")} == {"removed"}


def emitted_metrics(output: str) -> list[str]:
    """The metric names of every CloudWatch embedded-metric record printed (what Lambda's logs carry)."""
    records = [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]
    return [
        metric["Name"]
        for record in records
        for directive in record["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
    ]


def test_a_job_failing_its_last_try_counts_once_in_jobs_failed(
    seeded: Api,
    background: Background,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a clean-up whose store fails every time, and metrics printed as in Lambda
    background.settle()
    indexes_caught_up()
    seeded.delete_segment("AVITO_VOICE_MESSAGES")
    monkeypatch.setattr(type(get_store()), "members_page", lambda *args, **kwargs: 1 / 0)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    background.stream()
    capsys.readouterr()
    # When its five tries fail
    background.jobs("cleanup")
    # Then the last one, and only it, counts in JobsFailed (the metric of JobsFailedAlarm)
    assert emitted_metrics(capsys.readouterr().out).count("JobsFailed") == 1
    assert len(background.dead_letters("cleanup")) == 1


def test_a_lost_cleanup_message_is_sent_again_by_the_sweeper(seeded: Api, background: Background) -> None:
    seeded.delete_segment("AVITO_VOICE_MESSAGES")
    background.stream()
    background.purge("cleanup")  # the message is lost
    indexes_caught_up()
    with later(LATER):
        assert background.sweep()["cleanup"] == 1
        background.settle()
        background.sweep()
        background.settle()
    assert generation_item("AVITO_VOICE_MESSAGES")["cleanup"]["S"] == "done"


def test_member_shards_come_from_the_generation(api: Api) -> None:
    api.create_segment("SHARDED")
    assert get_store().live_segments(["SHARDED"], consistent=True)["SHARDED"].member_shards == MEMBER_SHARDS
