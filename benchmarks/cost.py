"""Figure 8: dollars per million reads and writes at AWS list prices (us-east-1, arm64), and what
SnapStart adds per month at 1, 10 and 100 reads a second.

DynamoDB units come from the sizes of the real items the benchmarks stored, computed with DynamoDB's
own size rules, because moto's ConsumedCapacity figures are placeholders.
"""

import math
from decimal import Decimal
from typing import Any

from benchmarks.harness import ROOT, TABLE, Figure
from tests.support.table import load_yaml

LAMBDA_GB_SECOND = 0.0000133334  # arm64
LAMBDA_REQUEST = 0.20 / 1e6
HTTP_API_REQUEST = 1.00 / 1e6
READ_REQUEST_UNIT = 0.125 / 1e6  # on-demand
WRITE_REQUEST_UNIT = 0.625 / 1e6
MEMORY_GB = 512 / 1024  # template.yaml Globals MemorySize
DYNAMODB_ROUND_TRIP_MS = 5.0  # in-region latency per call, added to the CPU time measured here
# SnapStart for Python (Lambda's price list, us-east-1, in force since 2025-10-01; the same on arm64):
SNAPSTART_CACHE_GB_SECOND = 0.0000015046  # per GB of memory, for as long as a version's snapshot exists
SNAPSTART_RESTORE_GB = 0.0001397998  # per GB of memory, each time an instance resumes from it
MONTH_SECONDS = 730 * 3600  # AWS's pricing month
# Assumptions of the restore count (Lambda publishes neither figure): an instance is replaced, or an
# idle one reaped and later resumed again, at most every 10 minutes; the busiest route's instances are
# three times its mean concurrency, at least one.
RESTORE_INTERVAL_S = 600
PEAK_TO_MEAN = 3
RATES = (1, 10, 100)  # reads a second


def value_size(value: dict[str, Any]) -> int:
    """Bytes DynamoDB counts for one attribute value."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode("utf-8"))
    if kind == "N":
        digits = Decimal(inner).normalize().as_tuple().digits
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: item}) for item in inner)
    if kind == "L":
        return 3 + sum(value_size(item) + 1 for item in inner)
    if kind == "M":
        return 3 + sum(len(name.encode("utf-8")) + value_size(item) + 1 for name, item in inner.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: dict[str, dict[str, Any]]) -> int:
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def read_units(total_bytes: int, consistent: bool) -> float:
    """A Query is charged on the sum of the items it reads, in 4 KB steps; eventual reads cost half."""
    steps = max(1, math.ceil(total_bytes / 4096))
    return steps if consistent else steps / 2


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def lambda_cost(duration_ms: float) -> float:
    return LAMBDA_REQUEST + math.ceil(duration_ms) / 1000 * MEMORY_GB * LAMBDA_GB_SECOND


def measure(read_cpu_ms: float, write_ms: float, user_id: int, segment_slug: str) -> list[Figure]:
    """Per million: one warm GET of `user_id`, and one update adding one segment (`segment_slug`)."""
    import boto3

    client = boto3.client("dynamodb")
    memberships = client.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :sk)",
        ExpressionAttributeValues={":pk": {"S": f"USER#{user_id}"}, ":sk": {"S": "SEG#"}},
    )["Items"]
    membership = max(item_size(item) for item in memberships)
    user_bytes = sum(item_size(item) for item in memberships)
    segment = item_size(
        client.get_item(TableName=TABLE, Key={"pk": {"S": f"SEGMENT#{segment_slug}"}, "sk": {"S": "META"}})[
            "Item"
        ]
    )
    history_row = membership  # a history row carries fewer attributes than the membership it records

    read_ms = read_cpu_ms + DYNAMODB_ROUND_TRIP_MS
    read_db = read_units(user_bytes, consistent=False) * READ_REQUEST_UNIT
    read = HTTP_API_REQUEST + lambda_cost(read_ms) + read_db

    # Consistent Query of the user, then a transaction: ConditionCheck of the segment (2 RRU per 4 KB)
    # and a Put of the membership (2 WRU per KB) that also writes the members index (1 WRU per KB);
    # the stream then writes one history row (1 WRU) and its month index entry (1 WRU).
    write_db = (
        read_units(user_bytes, consistent=True) * READ_REQUEST_UNIT
        + 2 * read_units(segment, consistent=True) * READ_REQUEST_UNIT
        + (2 * write_units(membership) + write_units(membership)) * WRITE_REQUEST_UNIT
        + 2 * write_units(history_row) * WRITE_REQUEST_UNIT
    )
    write = HTTP_API_REQUEST + lambda_cost(write_ms) + write_db
    return [
        *snapstart_per_month(read_ms, read),
        Figure(
            "cost_per_million_reads",
            read * 1e6,
            "USD",
            (HTTP_API_REQUEST + read_db) * 1e6,
            "reported",
            f"{len(memberships)} items, {user_bytes} B; Lambda billed {math.ceil(read_ms)} ms at 512 MB; "
            "floor: API + DynamoDB alone",
        ),
        Figure(
            "cost_per_million_writes",
            write * 1e6,
            "USD",
            (HTTP_API_REQUEST + write_db) * 1e6,
            "reported",
            f"add 1 segment: membership {membership} B, segment {segment} B; Lambda billed "
            f"{math.ceil(write_ms)} ms (measured on moto); floor: API + DynamoDB alone",
        ),
    ]


def snapstart_memory_gb() -> dict[str, float]:
    """{function: memory in GB} of every function template.yaml gives SnapStart."""
    template = load_yaml(ROOT / "template.yaml")
    default = template["Globals"]["Function"]["MemorySize"]
    return {
        name: resource["Properties"].get("MemorySize", default) / 1024
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function" and "SnapStart" in resource["Properties"]
    }


def snapstart_per_month(read_ms: float, cost_per_read: float) -> list[Figure]:
    """The service's monthly bill for R reads a second (the read route's), with SnapStart against without.

    Cache: one live snapshot per SnapStart function, all month (a superseded version is deleted at the
    next deploy: template.yaml). Restores: every SnapStart function resumes an instance once per
    RESTORE_INTERVAL_S, the read route once per interval for each of its peak instances.
    """
    memory = snapstart_memory_gb()
    cache = sum(memory.values()) * MONTH_SECONDS * SNAPSTART_CACHE_GB_SECOND
    rounds = MONTH_SECONDS / RESTORE_INTERVAL_S
    figures = []
    for rate in RATES:
        readers = max(1, math.ceil(PEAK_TO_MEAN * rate * read_ms / 1000))
        restored_gb = rounds * (sum(memory.values()) + (readers - 1) * memory["GetUserSegmentsFunction"])
        restores = restored_gb * SNAPSTART_RESTORE_GB
        without = rate * MONTH_SECONDS * cost_per_read
        figures.append(
            Figure(
                f"snapstart_cost_per_month.{rate}_rps",
                without + cache + restores,
                "USD",
                without,
                "reported",
                f"{len(memory)} snapshots ({sum(memory.values()):g} GB) cached ${cache:.2f}, "
                f"{rounds * (len(memory) + readers - 1):,.0f} restores ${restores:.2f}; floor: "
                f"{rate} reads/s without SnapStart",
            )
        )
    return figures
