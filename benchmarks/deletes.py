"""Figure 5: DELETE /segments/{slug} with 10,000 members against 10, and the background clean-up rate."""

import json
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from benchmarks.harness import TABLE, Figure, elapsed
from dal.entities import MembershipItem
from dal.factory import get_store
from models.domain import MEMBER_SHARDS, Change, MembershipRecord, MembershipState, Operation, Reason
from tests.support.api import Api, FakeContext

BIG, SMALL = "DELETE_BIG", "DELETE_SMALL"


def write_members(slug: str, count: int, first_user: int) -> None:
    """Members written straight through the repository's item mapping, in batches: no API round trips."""
    now = datetime.now(UTC)
    store = get_store()
    with MembershipItem.batch_write() as batch:
        for user_id in range(first_user, first_user + count):
            record = MembershipRecord(
                user_id,
                slug,
                1,
                MembershipState.MEMBER,
                1,
                now,
                None,
                Change(Operation.ADD, Reason.MANUAL, now),
            )
            batch.save(store.membership_item(record, MEMBER_SHARDS))


def key(slug: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": f"SEGMENT#{slug}"}, "sk": {"S": sk}}


def undelete(client: Any, slug: str, segment_item: dict[str, Any]) -> None:
    """Put the segment back as it was and drop its GEN# item, so the same members can be deleted again.

    moto copies every table on each TransactWriteItems, so each DELETE here costs a copy of 10,000+
    items on both sides of the ratio: a few repeats, not many.
    """
    client.put_item(TableName=TABLE, Item=segment_item)
    client.delete_item(TableName=TABLE, Key=key(slug, "GEN#0000000001"))


def cleanup_job(slug: str) -> dict[str, Any]:
    """The SQS event Lambda would deliver for the clean-up job the DELETE started."""
    from tests.support.events import load_event

    event = load_event("queue_cleanup")
    event["Records"][0]["body"] = json.dumps({"kind": "cleanup", "slug": slug, "generation": 1})
    return event


def removed_so_far(client: Any, slug: str) -> int:
    item = client.get_item(TableName=TABLE, Key=key(slug, "GEN#0000000001"), ConsistentRead=True)["Item"]
    return int(item["removed"]["N"])


def raw_put_rate(client: Any, count: int) -> float:
    """Conditional PutItems per second straight through boto3: what one clean-up write could be."""
    start = time.perf_counter()
    for user_id in range(count):
        client.put_item(
            TableName=TABLE,
            Item={
                "pk": {"S": f"USER#{9_000_000 + user_id}"},
                "sk": {"S": "SEG#FLOOR"},
                "revision": {"N": "1"},
            },
            ConditionExpression="attribute_not_exists(pk)",
        )
    return count / (time.perf_counter() - start)


def measure(big: int, small: int, repeats: int) -> tuple[list[Figure], dict[str, float]]:
    import boto3

    from handlers.queue_cleanup import lambda_handler as clean_up

    api, client = Api(), boto3.client("dynamodb")
    for slug in (BIG, SMALL):
        assert api.create_segment(slug).status == 201
    write_members(BIG, big, 1_000_000)
    write_members(SMALL, small, 5_000_000)
    items = {slug: client.get_item(TableName=TABLE, Key=key(slug, "META"))["Item"] for slug in (BIG, SMALL)}
    big_s: list[float] = []
    small_s: list[float] = []
    for _ in range(repeats):
        for slug, samples in ((SMALL, small_s), (BIG, big_s)):
            samples.append(time_delete(api, slug))
            undelete(client, slug, items[slug])
    assert api.delete_segment(BIG).status == 204
    event = cleanup_job(BIG)
    seconds = elapsed(lambda: _assert_no_failures(clean_up(event, FakeContext())))
    removed = removed_so_far(client, BIG)  # the first walk; the second, two minutes on, finds nobody
    assert removed == big, (removed, big)
    floor_rate = raw_put_rate(client, min(big, 2000))
    figures = [
        Figure(
            "delete_ratio",
            statistics.median(big_s) * 1e3,
            "ms",
            statistics.median(small_s) * 1e3,
            "<= 1.2",
            f"DELETE with {big:,} members vs {small:,}, median of {repeats} pairs",
            paired_ratio=statistics.median(b / s for b, s in zip(big_s, small_s, strict=True)),
        ),
        Figure(
            "cleanup_members_per_s",
            removed / seconds,
            "members/s",
            floor_rate,
            "reported",
            f"{removed:,} members tombstoned by a clean-up job's first walk in {seconds:.1f} s; "
            "floor: raw conditional PutItem rate",
        ),
    ]
    return figures, {"delete_ms": statistics.median(big_s) * 1e3}


def time_delete(api: Api, slug: str) -> float:
    start = time.perf_counter()
    status = api.delete_segment(slug).status
    seconds = time.perf_counter() - start
    assert status == 204, status
    return seconds


def _assert_no_failures(response: Any) -> None:
    assert not (response or {}).get("batchItemFailures"), response
