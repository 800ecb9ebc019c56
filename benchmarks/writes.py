"""Figure 4: DynamoDB calls per user update of 1, 10 and 50 slugs, warm and with a cold catalog."""

from collections import Counter

from benchmarks.harness import Figure, elapsed
from dal.factory import get_catalog
from tests.support.api import Api
from tests.support.calls import counting_calls

FIRST_USER = 2000


def seed(api: Api, count: int) -> list[str]:
    slugs = [f"WRITE_SEGMENT_{number:02d}" for number in range(count)]
    for slug in slugs:
        assert api.create_segment(slug).status == 201
    return slugs


def update_calls(api: Api, user_id: int, slugs: list[str]) -> tuple[Counter[str], float]:
    with counting_calls() as calls:
        seconds = elapsed(lambda: _assert_ok(api.change_user(user_id, add=slugs).status))
    return Counter(calls), seconds


def _assert_ok(status: int) -> None:
    assert status == 200, status


def measure(sizes: tuple[int, ...]) -> tuple[list[Figure], dict[str, float]]:
    api = Api()
    slugs = seed(api, max(sizes))
    figures, durations = [], {}
    for offset, size in enumerate(sizes):
        get_catalog().segments_for(slugs)  # a warm container: the catalog is cached and current
        warm, seconds = update_calls(api, FIRST_USER + offset, slugs[:size])
        get_catalog.cache_clear()  # a cold container reads the catalog once more
        cold, _ = update_calls(api, FIRST_USER + 100 + offset, slugs[:size])
        durations[f"write_ms.{size}"] = seconds * 1e3
        figures.append(
            Figure(
                f"write_calls.{size}_slugs",
                sum(warm.values()),
                "calls",
                1,
                "1 transaction + reads",
                f"warm {_named(warm)}; cold catalog {_named(cold)}",
            )
        )
    return figures, durations


def _named(calls: Counter[str]) -> str:
    return " + ".join(f"{count} {name}" for name, count in sorted(calls.items()))
