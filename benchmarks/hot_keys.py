"""Hot keys under load, from the call meter (benchmarks/call_meter.py): the hottest item's share of
all item writes, and the hottest partition's write units per 1,000 user updates, for a load of
users into one segment and for a mixed workload. Streams are delivered, so history rows count too.
"""

import json
import random
import subprocess
import sys

from benchmarks.call_meter import Meter, metering
from benchmarks.harness import ROOT, TABLE, Figure, moto_aws
from tests.support.api import Api
from tests.support.service_events import service_client

HOT_SEGMENT = "AVITO_VOICE_MESSAGES"
ITEM_SHARE_TARGET = 0.001
PARTITION_TARGET = 50


def measure(users: int, mixed_users: int, processes: int = 2) -> tuple[list[Figure], dict[str, object]]:
    """The one-segment load is split over processes, each with its own moto and the same segment
    (generation 1 everywhere): their meters add up to the meter of one table that took every user."""
    one, one_updates = _in_processes(users, processes), users
    mixed, mixed_updates = _mixed_load(mixed_users)
    figures: list[Figure] = []
    hottest: dict[str, object] = {}
    for name, meter, updates in (("one_segment", one, one_updates), ("mixed", mixed, mixed_updates)):
        item, item_units = meter.hottest_item()
        partition, partition_units = meter.hottest_partition()
        hottest[name] = {"item": item, "item_units": item_units, "partition": partition}
        figures += [
            Figure(
                f"hottest_item_write_share.{name}",
                meter.hottest_item_write_share(),
                "share",
                None,
                f"<= {ITEM_SHARE_TARGET}" if name == "one_segment" else "reported",
                f"{updates:,} updates, {meter.total_item_units:,} item units; hottest {item[0]}|{item[1]}",
            ),
            Figure(
                f"hottest_partition_wcu_per_1k_updates.{name}",
                meter.hottest_partition_units_per_1k(updates),
                "WCU",
                None,
                f"<= {PARTITION_TARGET}",
                f"hottest partition {partition} ({partition_units:,} units)",
            ),
        ]
    return figures, hottest


def _service_clients() -> list[object]:
    return [service_client()]  # every client the service makes (tests/support/service_events.py)


def _in_processes(users: int, processes: int) -> Meter:
    """Each process loads its share of the users; the parent adds their meters up."""
    share = -(-users // processes)
    commands = [
        [sys.executable, "-m", "benchmarks.hot_keys", str(first), str(min(users, first + share - 1))]
        for first in range(1, users + 1, share)
    ]
    running = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) for command in commands]
    total = Meter(TABLE)
    for process in running:
        out, _ = process.communicate()
        assert process.returncode == 0, out
        part = json.loads(out.strip().splitlines()[-1])
        total.item_units.update({tuple(key.split("|", 1)): units for key, units in part["items"].items()})
        total.partition_units.update(part["partitions"])
    return total


def _one_segment_load(first: int, last: int) -> Meter:
    api = Api()
    assert api.create_segment(HOT_SEGMENT).status == 201
    stream = _Stream()
    with metering(TABLE, _service_clients()) as meter:
        for user in range(first, last + 1):
            assert api.change_user(10_000_000 + user, add=[HOT_SEGMENT]).status == 200
            if user % 100 == 0:
                stream.deliver()
        stream.deliver()
    return meter


def _mixed_load(users: int) -> tuple[Meter, int]:
    """Plain and percentage segments (one exclusion group), adds with and without expiry, removes,
    opt-outs, ramps and a deletion with its clean-up, from a seeded random sequence."""
    rng = random.Random(7)
    api = Api()
    plain = [f"MIXED_{index:02d}" for index in range(20)]
    for slug in plain:
        api.create_segment(slug)
    percentage = ["MIXED_P1", "MIXED_P2"]
    for slug in percentage:
        api.create_segment(slug, auto_percent=20)
    grouped = ["MIXED_G1", "MIXED_G2", "MIXED_G3"]
    for slug in grouped:
        api.create_segment(slug, auto_percent=10, exclusion_group="MIXED_GROUP")
    slugs = plain + percentage + grouped
    stream, updates = _Stream(), 0
    with metering(TABLE, _service_clients()) as meter:
        for step in range(users * 3):
            user = 20_000_000 + rng.randrange(users)
            named = rng.sample(slugs, rng.randint(1, 4))
            split = rng.randint(0, len(named))
            adds = [
                {"slug": slug, "ttl_seconds": rng.choice([3600, 86_400])} if rng.random() < 0.3 else slug
                for slug in named[:split]
            ]
            answer = api.change_user(user, add=adds or None, remove=named[split:] or None)
            assert answer.status == 200, answer
            updates += 1
            if step % 500 == 0:
                api.patch_segment(rng.choice(percentage), auto_percent=rng.choice([10, 20, 30]))
            if step % 100 == 0:
                stream.deliver()
        api.delete_segment(plain[0])
        stream.deliver()
    return meter, updates


class _Stream:
    """The table's stream and the job queues, delivered to their functions as Lambda would."""

    def __init__(self) -> None:
        from tests.support.background import Background

        self.background = Background(TABLE)

    def deliver(self) -> None:
        self.background.settle()


if __name__ == "__main__":
    with moto_aws():
        metered = _one_segment_load(int(sys.argv[1]), int(sys.argv[2]))
    items = {f"{pk}|{sk}": units for (pk, sk), units in metered.item_units.items()}
    print(json.dumps({"items": items, "partitions": dict(metered.partition_units)}))
