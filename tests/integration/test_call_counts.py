"""The DynamoDB calls each route makes, counted, not guessed (the closing note quotes these)."""

import json
import os
from collections import Counter
from collections.abc import Iterator

import pytest

from dal.factory import get_catalog
from tests.conftest import indexes_caught_up
from tests.support.api import Api
from tests.support.calls import counting_calls

SEEDED_SLUGS = ["AVITO_DISCOUNT_30", "AVITO_DISCOUNT_50", "AVITO_PERFORMANCE_VAS", "AVITO_VOICE_MESSAGES"]


@pytest.fixture
def warm_catalog(monkeypatch: pytest.MonkeyPatch, seeded: Api) -> Iterator[Api]:
    """A container whose catalog cache is on (30 s, as deployed) and already loaded."""
    from shared import settings

    monkeypatch.setenv("CATALOG_CACHE_SECONDS", "30")
    settings.get_settings.cache_clear()
    get_catalog.cache_clear()
    get_catalog().segments_for(SEEDED_SLUGS)
    yield seeded
    settings.get_settings.cache_clear()
    get_catalog.cache_clear()


def test_warm_read_is_one_query(warm_catalog: Api) -> None:
    with counting_calls() as calls:
        assert warm_catalog.segments_of(1000) == [
            "AVITO_DISCOUNT_30",
            "AVITO_PERFORMANCE_VAS",
            "AVITO_VOICE_MESSAGES",
        ]
    assert calls == Counter({"Query": 1})


def test_warm_update_reads_its_segments_and_the_user_then_commits_once(warm_catalog: Api) -> None:
    with counting_calls() as calls:
        assert (
            warm_catalog.change_user(1004, add=["AVITO_DISCOUNT_30"], remove=["AVITO_DISCOUNT_50"]).status
            == 200
        )
    # the named segments from the table (consistent, never an index or the cache), the user, the commit
    assert calls == Counter({"BatchGetItem": 1, "Query": 1, "TransactWriteItems": 1})


def test_cold_update_reads_the_rule_set_once_more(seeded: Api) -> None:
    get_catalog.cache_clear()
    with counting_calls() as calls:
        assert seeded.change_user(1004, add=["AVITO_DISCOUNT_30"]).status == 200
    assert calls == Counter({"BatchGetItem": 1, "Query": 2, "TransactWriteItems": 1})


def test_segment_routes(api: Api) -> None:
    counts = {}
    for name, action in [
        ("POST /segments", lambda: api.create_segment("A")),
        ("GET /segments", lambda: api.list_segments()),
        ("GET /segments/{slug}", lambda: api.get_segment("A")),
        ("PATCH /segments/{slug}", lambda: api.patch_segment("A", description="x")),
        ("DELETE /segments/{slug}", lambda: api.delete_segment("A")),
    ]:
        indexes_caught_up()  # A shows in the list: the index has caught up with its creation
        with counting_calls() as calls:
            assert action().status < 300
        counts[name] = dict(calls)
    # Every segment write is a transaction (of one item, for a plain create or a description), so it
    # carries a ClientRequestToken; a deletion is its fence, then its commit.
    assert counts == {
        "POST /segments": {"GetItem": 1, "TransactWriteItems": 1},
        "GET /segments": {"Query": 1, "BatchGetItem": 1},
        "GET /segments/{slug}": {"GetItem": 1, "BatchGetItem": 1},  # the segment, its member counts
        "PATCH /segments/{slug}": {"GetItem": 2, "BatchGetItem": 1, "TransactWriteItems": 1},
        "DELETE /segments/{slug}": {"GetItem": 1, "TransactWriteItems": 2},
    }
    if os.environ.get("SEGMENTS_PRINT_CALLS"):
        print(json.dumps(counts, indent=2))


def test_a_count_inside_another_counts_its_own_calls_and_leaves_the_outer_counting(api: Api) -> None:
    with counting_calls() as outer:
        with counting_calls() as inner:
            api.create_segment("INNER")
        api.create_segment("OUTER")
    assert inner["TransactWriteItems"] == 1
    assert outer["TransactWriteItems"] == 2
