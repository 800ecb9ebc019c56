"""Figures 1 and 2: a warm GET /users/{id}/segments against the one raw Query it makes."""

from typing import Any

from benchmarks.harness import TABLE, Figure, paired_medians, replayed_reads
from tests.support.api import Api, FakeContext
from tests.support.calls import counting_calls
from tests.support.events import api_event

SEGMENTS = 50
PERCENTAGE_SEGMENTS = 10
MEMBERSHIPS = 20
USER = 1000


def seed_catalog(api: Api, segments: int, percentage: int) -> list[str]:
    """`segments` segments, the first `percentage` of them percentage segments; returns the manual slugs."""
    manual = []
    for number in range(segments):
        slug = f"BENCH_SEGMENT_{number:02d}"
        fields: dict[str, Any] = {"auto_percent": 10} if number < percentage else {}
        assert api.create_segment(slug, **fields).status == 201
        if number >= percentage:
            manual.append(slug)
    return manual


def raw_query(client: Any, user_id: int) -> Any:
    """The request the handler's store makes, written by hand against boto3."""
    return client.query(
        TableName=TABLE,
        KeyConditionExpression="#pk = :pk AND begins_with(#sk, :sk)",
        ExpressionAttributeNames={"#pk": "pk", "#sk": "sk"},
        ExpressionAttributeValues={":pk": {"S": f"USER#{user_id}"}, ":sk": {"S": "SEG#"}},
    )


def measure(
    repeats: int,
    segments: int = SEGMENTS,
    percentage: int = PERCENTAGE_SEGMENTS,
    memberships: int = MEMBERSHIPS,
) -> tuple[list[Figure], dict[str, float]]:
    import importlib

    import boto3

    api = Api()
    manual = seed_catalog(api, segments, percentage)
    assert api.change_user(USER, add=manual[:memberships]).status == 200
    client = boto3.client("dynamodb")
    # The event and context are built once, as Lambda hands them over: only the handler is timed.
    lambda_handler = importlib.import_module("handlers.api_get_user_segments").lambda_handler
    event, context = api_event("api_get_user_segments", path={"user_id": str(USER)}, query={}), FakeContext()

    def handler() -> None:
        response = lambda_handler(event, context)
        assert response["statusCode"] == 200, response

    handler()  # warm: the container has loaded its catalog
    with counting_calls() as calls:
        handler()
    handler_s, query_s = paired_medians(handler, lambda: raw_query(client, USER), repeats)
    with replayed_reads():
        cpu_s, botocore_s = paired_medians(handler, lambda: raw_query(client, USER), repeats)
    figures = [
        # The headline: moto spends milliseconds serialising items DynamoDB sends in a fraction of
        # that, so only with its time taken out does the ratio show what the service adds.
        Figure(
            "read_path_ratio.replayed_backend",
            cpu_s * 1e3,
            "ms",
            botocore_s * 1e3,
            "<= 1.25",
            f"median of {repeats}; {segments} segments ({percentage} percentage), {memberships} memberships; "
            "moto's time taken out: each answer replayed as bytes",
        ),
        Figure(
            "read_path_ratio",
            handler_s * 1e3,
            "ms",
            query_s * 1e3,
            "reported",
            "the same pair with moto serving both (its serialisation dominates both sides)",
        ),
        Figure(
            "read_path_calls",
            sum(calls.values()),
            "calls",
            1,
            "== 1",
            ", ".join(f"{name} {count}" for name, count in sorted(calls.items())),
        ),
    ]
    return figures, {
        "read_ms": handler_s * 1e3,
        "read_cpu_ms": cpu_s * 1e3,
        "calls": float(sum(calls.values())),
    }
