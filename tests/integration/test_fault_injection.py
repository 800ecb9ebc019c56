"""Throttling, transaction conflicts and timeouts on random DynamoDB calls (botocore event hooks, seeded):
the service retries where safe, answers 503 + Retry-After when it gives up, never 500, never writes half a
request; the history stream processor, re-delivered as Lambda would, still writes every row exactly once."""

import importlib
import random
from collections import Counter
from typing import Any

import boto3
import pytest

from tests.conftest import TABLE
from tests.support.api import Answer, Api, FakeContext
from tests.support.faults import BEFORE, LOST_ANSWER, THROTTLES, Faults, injecting
from tests.support.service_events import service_client
from tests.support.streams import StreamTap, template_filter

SEGMENTS = ["S0", "S1", "S2", "S3", "S4", "S5"]
USERS = [1, 2, 3, 4, 5]


def items_of(pk: str, prefix: str = "") -> list[dict[str, Any]]:
    """The partition read with a client of its own, which no fault is injected into."""
    found = boto3.client("dynamodb").query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}},
        ConsistentRead=True,
    )["Items"]
    found = [item for item in found if item["sk"]["S"].startswith(prefix)]
    return sorted(found, key=lambda item: item["sk"]["S"])


def active(api: Api, faults: Faults, user: int) -> list[str]:
    faults.enabled = False
    try:
        return api.segments_of(user)
    finally:
        faults.enabled = True


def assert_busy_or(answer: Answer, *statuses: int) -> None:
    assert answer.status in (*statuses, 503), answer
    if answer.status == 503:
        assert answer.headers.get("Retry-After") == "1", answer
        assert answer.problem["status"] == 503


def random_change(rng: random.Random) -> tuple[list[Any], list[str]]:
    named = rng.sample(SEGMENTS, rng.randint(1, 4))
    cut = rng.randint(0, len(named))
    adds: list[Any] = [
        {"slug": slug, "ttl_seconds": 3600} if rng.random() < 0.3 else slug for slug in named[:cut]
    ]
    return adds, named[cut:]


def slug_of(add: Any) -> str:
    return add if isinstance(add, str) else str(add["slug"])


@pytest.fixture
def catalog(api: Api) -> Api:
    for slug in SEGMENTS:
        assert api.create_segment(slug).status == 201
    return api


@pytest.mark.parametrize("seed", [1, 2])
def test_user_updates_under_faults_answer_200_or_503_and_never_write_half(catalog: Api, seed: int) -> None:
    rng = random.Random(seed)
    statuses: Counter[int] = Counter()
    with injecting(Faults(random.Random(seed), rate=0.25, kinds=BEFORE)) as faults:
        for _ in range(40):
            user = rng.choice(USERS)
            adds, removes = random_change(rng)
            before = items_of(f"USER#{user}", "SEG#")
            answer = catalog.change_user(user, add=adds or None, remove=removes or None)
            statuses[answer.status] += 1
            assert_busy_or(answer, 200)
            if answer.status == 503:
                assert items_of(f"USER#{user}", "SEG#") == before  # nothing of it was written
            else:
                assert active(catalog, faults, user) == answer.body["segments"]
                assert set(answer.body["segments"]) >= {slug_of(add) for add in adds}
                assert not set(answer.body["segments"]) & set(removes)
    assert statuses[200] > 10 and statuses[503] > 3, statuses
    assert sum(faults.injected.values()) > 10, faults.injected


@pytest.mark.parametrize("seed", [3, 4])
def test_reads_and_segment_writes_under_faults_are_2xx_4xx_or_503(catalog: Api, seed: int) -> None:
    rng = random.Random(seed)
    with injecting(Faults(random.Random(seed), rate=0.3, kinds=BEFORE)) as faults:
        for step in range(50):
            slug = rng.choice([*SEGMENTS, "NEW"])
            before = items_of(f"SEGMENT#{slug}")
            action = rng.choice(["create", "delete", "patch", "get", "list", "user"])
            if action == "create":
                answer = catalog.create_segment(slug, description=f"step {step}")
                assert_busy_or(answer, 201, 409)
            elif action == "delete":
                answer = catalog.delete_segment(slug)
                assert_busy_or(answer, 204, 404)
            elif action == "patch":
                answer = catalog.patch_segment(slug, description=f"step {step}")
                assert_busy_or(answer, 200, 404)
            elif action == "get":
                assert_busy_or(catalog.get_segment(slug), 200, 404)
                continue
            elif action == "list":
                assert_busy_or(catalog.list_segments(limit="2"), 200)
                continue
            else:
                assert_busy_or(catalog.user_segments(rng.choice(USERS), details=True), 200)
                continue
            if answer.status == 503:
                assert items_of(f"SEGMENT#{slug}") == before
    assert sum(faults.injected.values()) > 10, faults.injected


def test_transaction_conflicts_are_retried_inside_the_request(catalog: Api) -> None:
    with injecting(Faults(random.Random(5), rate=0.5, kinds=("TransactionConflict",))) as faults:
        answers = [catalog.change_user(user, add=["S0", "S1"]) for user in USERS * 4]
    assert [answer.status for answer in answers] == [200] * len(answers)
    assert faults.injected["TransactionConflict:TransactWriteItems"] > 5


def test_endless_conflicts_end_in_503_with_retry_after_and_nothing_written(catalog: Api) -> None:
    with injecting(Faults(random.Random(6), rate=1.0, kinds=("TransactionConflict",))) as faults:
        answer = catalog.change_user(1, add=["S0"], remove=["S1"])
    assert answer.status == 503 and answer.headers["Retry-After"] == "1", answer
    assert faults.injected["TransactionConflict:TransactWriteItems"] == 6  # WRITE_ATTEMPTS
    assert items_of("USER#1") == []


@pytest.mark.parametrize("kind", [*THROTTLES, "ReadTimeout", "ConnectTimeout"])
def test_every_throttle_and_timeout_is_503_on_every_route(catalog: Api, kind: str) -> None:
    with injecting(Faults(random.Random(7), rate=1.0, kinds=(kind,))):
        answers = [
            catalog.create_segment("NEW"),
            catalog.get_segment("S0"),
            catalog.list_segments(),
            catalog.patch_segment("S0", description="x"),
            catalog.delete_segment("S0"),
            catalog.change_user(1, add=["S0"]),
            catalog.user_segments(1),
        ]
    for answer in answers:
        assert answer.status == 503 and answer.headers["Retry-After"] == "1", (kind, answer)
    assert items_of("SEGMENT#NEW") == [] and items_of("USER#1") == []
    assert catalog.get_segment("S0").status == 200


def test_an_answer_lost_after_the_commit_leaves_all_of_the_request_or_none(catalog: Api) -> None:
    rng = random.Random(8)
    outcomes: Counter[str] = Counter()
    with injecting(Faults(random.Random(8), rate=0.25, kinds=(LOST_ANSWER,))) as faults:
        for _ in range(25):
            user = rng.choice(USERS)
            adds, removes = random_change(rng)
            before = set(active(catalog, faults, user))
            answer = catalog.change_user(user, add=adds or None, remove=removes or None)
            assert_busy_or(answer, 200)
            after = set(active(catalog, faults, user))
            intended = (before | {slug_of(add) for add in adds}) - set(removes)
            if answer.status == 200:
                assert after == set(answer.body["segments"]) == intended
            else:
                assert after in (before, intended), (before, after, intended)
                outcomes["applied" if after == intended != before else "none"] += 1
    assert faults.injected[f"{LOST_ANSWER}:TransactWriteItems"] >= 3, faults.injected


# --- the history stream processor ------------------------------------------------------------------


def deliver_like_lambda(records: list[dict[str, Any]], batch_size: int = 100, attempts: int = 200) -> int:
    """A raised error retries the whole batch; reported failures retry from the first failed record."""
    handler = importlib.import_module("handlers.stream_table").lambda_handler
    invocations = 0
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        while batch:
            invocations += 1
            assert invocations < attempts, "the batch never got through"
            try:
                response = handler({"Records": batch}, FakeContext())
            except Exception:
                continue
            failures = [item["itemIdentifier"] for item in response["batchItemFailures"]]
            if not failures:
                break
            first = [record["dynamodb"]["SequenceNumber"] for record in batch].index(failures[0])
            batch = batch[first:]
    return invocations


def _scan() -> list[dict[str, Any]]:
    client = boto3.client("dynamodb")
    pages = client.get_paginator("scan").paginate(TableName=TABLE, ConsistentRead=True)
    return [item for page in pages for item in page["Items"]]


def history_items() -> list[str]:
    """What the stream's reader wrote: every history row and every segment generation's counts."""
    rows = [
        f"{item['pk']['S']}|{item['sk']['S']}|{item['reason']['S']}"
        for item in _scan()
        if item["sk"]["S"].startswith("HIST#")
    ]
    # A generation's counts, the sum of its shards: which shard takes a change depends on how records
    # were delivered together, what they add up to does not.
    totals: Counter[tuple[str, str]] = Counter()
    for item in _scan():
        if item["pk"]["S"].startswith("COUNT#"):
            generation = item["pk"]["S"].rsplit("#", 1)[0]
            for name in ("explicit", "opted_out"):
                totals[(generation, name)] += int(item.get(name, {}).get("N", "0"))
    counts = [f"{generation}|{name}|{total}" for (generation, name), total in sorted(totals.items())]
    return sorted(rows + counts)


def forget_history() -> None:
    """The reader's work undone (its rows, counts and applied marks), for the same stream again."""
    client = boto3.client("dynamodb")
    for item in _scan():
        if item["sk"]["S"].startswith(("HIST#", "APPLIED#")) or item["pk"]["S"].startswith("COUNT#"):
            client.delete_item(TableName=TABLE, Key={"pk": item["pk"], "sk": item["sk"]})


def stream_workload(api: Api, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    for _ in range(30):
        adds, removes = random_change(rng)
        assert api.change_user(rng.choice(USERS), add=adds or None, remove=removes or None).status == 200
    api.delete_segment("S5")
    api.create_segment("S5")
    api.change_user(1, add=["S5"])
    accept = template_filter("StreamFunction")
    return [record for record in StreamTap(TABLE).new_records() if accept(record)]


def test_stream_history_under_faults_is_exactly_once(catalog: Api) -> None:
    records = stream_workload(catalog, seed=9)
    kinds = (*BEFORE, LOST_ANSWER)
    with injecting(Faults(random.Random(9), rate=0.5, kinds=kinds)) as faults:
        invocations = deliver_like_lambda(records, batch_size=2)
    faulty = history_items()
    forget_history()
    deliver_like_lambda(records)
    assert faulty == history_items()
    assert len(faulty) >= 30 and invocations > len(records) // 2, (len(faulty), invocations)
    assert sum(faults.injected.values()) >= 5, faults.injected


class Killed(BaseException):
    """The Lambda instance dies: not an error the batch processor catches."""


@pytest.mark.parametrize("kill_after", [0, 1, 13, 29])
def test_stream_processor_killed_between_records_then_restarted_gives_the_same_history(
    catalog: Api, monkeypatch: pytest.MonkeyPatch, kill_after: int
) -> None:
    from handlers import stream_table as stream_history

    records = stream_workload(catalog, seed=10)[:30]
    deliver_like_lambda(records)
    uninterrupted = history_items()
    forget_history()
    real_change_of = stream_history.change_of
    seen = Counter[str]()

    def dying(record: Any) -> Any:
        if seen["records"] == kill_after:
            raise Killed
        seen["records"] += 1
        return real_change_of(record)

    monkeypatch.setattr(stream_history, "change_of", dying)
    with pytest.raises(Killed):
        stream_history.lambda_handler({"Records": records}, FakeContext())
    monkeypatch.setattr(stream_history, "change_of", real_change_of)
    deliver_like_lambda(records)  # the same batch again, on a new instance
    assert history_items() == uninterrupted


@pytest.mark.parametrize("kill_at_call", [2, 3])
def test_stream_processor_killed_between_history_writes_then_restarted_gives_the_same_history(
    catalog: Api, kill_at_call: int
) -> None:
    records = stream_workload(catalog, seed=11)
    deliver_like_lambda(records)
    uninterrupted = history_items()
    assert len(uninterrupted) > 25
    forget_history()
    calls = Counter[str]()

    def die_on_write(model: Any, **_: Any) -> None:
        if model.name == "TransactWriteItems":  # one per group of records: rows, counts, applied marks
            calls["writes"] += 1
            if calls["writes"] == kill_at_call:
                raise Killed

    events = service_client().meta.events
    events.register_first("before-call.dynamodb", die_on_write, unique_id="kill")
    try:
        with pytest.raises(Killed):
            deliver_like_lambda(records, batch_size=10)  # one transaction an invocation: one after another
    finally:
        events.unregister("before-call.dynamodb", unique_id="kill")
    assert 0 < len(history_items()) < len(uninterrupted)  # the records written before the kill
    deliver_like_lambda(records)
    assert history_items() == uninterrupted
