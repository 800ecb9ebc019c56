"""All or nothing, and concurrent writers never lose each other's changes."""

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.support.api import Answer, Api


def change_until_accepted(api: Api, user_id: int, **changes: Any) -> Answer:
    """A well-behaved client: on 503 it waits as told and sends the same request again."""
    for _ in range(20):
        answer = api.change_user(user_id, **changes)
        if answer.status != 503:
            assert answer.status == 200, answer
            return answer
        assert int(answer.headers["Retry-After"]) >= 1
    raise AssertionError("still busy after 20 tries")


def test_one_unknown_slug_among_ten_changes_nothing(api: Api) -> None:
    # Given nine existing segments and a user holding two of them
    slugs = [f"SEG_{n}" for n in range(9)]
    for slug in slugs:
        api.create_segment(slug)
    api.change_user(1000, add=["SEG_0", "SEG_1"])
    # When one request adds seven, removes one, and names one slug that does not exist
    answer = api.change_user(1000, add=[*slugs[2:8], "MISSING_ONE"], remove=["SEG_0"])
    # Then it is a 404 naming the missing slug, and the user is exactly as before
    assert answer.status == 404
    assert answer.problem["missing"] == ["MISSING_ONE"]
    assert api.segments_of(1000) == ["SEG_0", "SEG_1"]


def test_missing_slugs_are_all_listed_sorted(api: Api) -> None:
    api.create_segment("A")
    answer = api.change_user(7, add=["Z_MISSING", "A"], remove=["B_MISSING"])
    assert answer.status == 404
    assert answer.problem["missing"] == ["B_MISSING", "Z_MISSING"]
    assert api.segments_of(7) == []


def test_eight_threads_updating_one_user_lose_nothing(api: Api) -> None:
    # Given 8 writers, each with its own 2 segments, and one segment they all fight over
    for writer in range(8):
        for n in range(2):
            api.create_segment(f"W{writer}_{n}")
    api.create_segment("SHARED")
    start = threading.Barrier(8)

    def write(writer: int) -> list[dict[str, object]]:
        start.wait()
        answers = []
        for n in range(2):
            answer = change_until_accepted(api, 1000, add=[f"W{writer}_{n}", "SHARED"])
            answers.append(answer.body)
        return answers

    # When they all write at once
    with ThreadPoolExecutor(max_workers=8) as pool:
        bodies = [body for answers in pool.map(write, range(8)) for body in answers]
    # Then every change is kept, and exactly one request saw SHARED as newly added
    expected = sorted([f"W{w}_{n}" for w in range(8) for n in range(2)] + ["SHARED"])
    assert api.segments_of(1000) == expected
    assert sum("SHARED" in body["added"] for body in bodies) == 1  # type: ignore[operator]
    assert all(f"W{w}_{n}" in api.segments_of(1000) for w in range(8) for n in range(2))


def test_concurrent_add_and_remove_of_one_segment_end_in_a_state_some_request_promised(api: Api) -> None:
    api.create_segment("FLIP")

    def flip(n: int) -> dict[str, object]:
        answer = api.change_user(5, add=["FLIP"]) if n % 2 else api.change_user(5, remove=["FLIP"])
        assert answer.status in (200, 503), answer
        if answer.status == 503:  # gave up after bounded retries: promised nothing, wrote nothing
            assert answer.headers["Retry-After"] == "1"
            return {"added": [], "removed": []}
        return answer.body

    with ThreadPoolExecutor(max_workers=8) as pool:
        bodies = list(pool.map(flip, range(40)))
    added = sum("FLIP" in body["added"] for body in bodies)  # type: ignore[operator]
    removed = sum("FLIP" in body["removed"] for body in bodies)  # type: ignore[operator]
    # Each reported change really happened once: the final state is the replay of them.
    assert added - removed == (1 if api.segments_of(5) == ["FLIP"] else 0)
