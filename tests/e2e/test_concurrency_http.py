"""Concurrency over signed HTTPS, as deployed: 8 client threads change 20 users' segments while segments
come and go.

Afterwards, once the stream has settled, the test checks what the SPEC promises:
1. every user's GET /users/{id}/segments equals the replay of their history report (restricted to
   segments that exist now);
2. every 503 carries Retry-After, and no 503 (or 404) left an effect: the history's manual rows are
   exactly the changes that successful responses reported, one row each;
3. no 500 (or any other unexpected status) was ever answered;
4. the promises are consistent: each response's `segments` agrees with its own added/removed/unchanged,
   and the last response that named a slug for a user (unambiguously last, with no delete or create of
   that slug after it started) agrees with the user's final membership.

`SEGMENTS_HTTP_CONCURRENCY_UPDATES` sets the updates per thread: default 15, bounded for busy machines;
the issue's full size is 500.
"""

from __future__ import annotations

import csv
import io
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.signed_http import ApiClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("deployed")]

THREADS = 8
UPDATES_PER_THREAD = int(os.environ.get("SEGMENTS_HTTP_CONCURRENCY_UPDATES", "15"))
SEED = 20261129
USERS = list(range(7001, 7021))
SLUGS = [f"CONC_{index}" for index in range(10)]
LIFECYCLE_SHARE = 0.06  # of a thread's operations, this many delete or re-create a segment
REQUEST_TIMEOUT_S = 120
SETTLE_TIMEOUT_S = 60  # the SPEC: never later than 60 s deployed

UPDATE_STATUSES = {200, 404, 503}
CREATE_STATUSES = {201, 409, 503}
DELETE_STATUSES = {204, 404, 503}


@dataclass
class Call:
    """One HTTP request a client thread made, with what came back."""

    thread: int
    kind: str  # "update" | "create" | "delete"
    started: float  # epoch seconds, to compare with the history's timestamps
    ended: float
    status: int
    slug: str | None = None
    user_id: int | None = None
    body: dict[str, Any] = field(default_factory=dict)
    answer: dict[str, Any] = field(default_factory=dict)
    retry_after: str | None = None


def months_between(start: datetime, end: datetime) -> list[str]:
    months = [start.strftime("%Y-%m")]
    if end.strftime("%Y-%m") != months[0]:
        months.append(end.strftime("%Y-%m"))
    return months


def random_update(rng: random.Random) -> dict[str, Any]:
    named = rng.sample(SLUGS, rng.randint(1, 3))
    cut = rng.randint(0, len(named))
    body: dict[str, Any] = {}
    if named[:cut]:
        body["add"] = named[:cut]
    if named[cut:]:
        body["remove"] = named[cut:]
    return body


def client(
    make_api: Callable[[], ApiClient],
    thread: int,
    deleted: set[str],
    lock: threading.Lock,
    calls: list[Call],
    failures: list[str],
) -> None:
    rng = random.Random(SEED * 100 + thread)
    session = make_api()
    try:
        for _ in range(UPDATES_PER_THREAD):
            if rng.random() < LIFECYCLE_SHARE:
                with lock:  # mostly bring a deleted segment back, so most updates name live segments
                    recreate = bool(deleted) and rng.random() < 0.75
                    slug = rng.choice(sorted(deleted)) if recreate else rng.choice(SLUGS)
                    recreate = recreate or slug in deleted
                started = time.time()
                if recreate:
                    response = session.post("/segments", json={"slug": slug}, timeout=REQUEST_TIMEOUT_S)
                else:
                    response = session.delete(f"/segments/{slug}", timeout=REQUEST_TIMEOUT_S)
                ended = time.time()
                if response.status_code in (201, 409) and recreate:
                    with lock:
                        deleted.discard(slug)
                if response.status_code in (204, 404) and not recreate:
                    with lock:
                        deleted.add(slug)
                calls.append(
                    Call(
                        thread, "create" if recreate else "delete", started, ended, response.status_code,
                        slug=slug, retry_after=response.headers.get("Retry-After"),
                    )
                )  # fmt: skip
            user_id = rng.choice(USERS)
            body = random_update(rng)
            started = time.time()
            response = session.post(f"/users/{user_id}/segments", json=body, timeout=REQUEST_TIMEOUT_S)
            ended = time.time()
            try:
                answer = response.json()
            except ValueError:
                answer = {"raw": response.text}
            calls.append(
                Call(
                    thread, "update", started, ended, response.status_code, user_id=user_id, body=body,
                    answer=answer, retry_after=response.headers.get("Retry-After"),
                )
            )  # fmt: skip
    except Exception as error:  # a crashed client fails the test
        failures.append(f"thread {thread}: {error!r}")
    finally:
        session.close()


def history_rows(api: ApiClient, periods: list[str], user_id: int) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for period in periods:
        query = {"period": period, "user_id": str(user_id)}
        response = api.get("/reports/history", params=query, timeout=REQUEST_TIMEOUT_S)
        for _ in range(60):
            if response.status_code != 202:
                break
            time.sleep(min(float(response.headers.get("Retry-After", "1")), 1.0))
            response = api.get("/reports/history", params=query, timeout=REQUEST_TIMEOUT_S)
        assert response.status_code == 200, response.text
        download = api.download(response.json()["url"])
        assert download.status_code == 200, download.text
        rows += list(csv.DictReader(io.StringIO(download.content.decode()), delimiter=";"))
    return rows


def replay(rows: list[dict[str, str]], existing: set[str]) -> list[str]:
    member: dict[str, bool] = {}
    for row in rows:
        member[row["segment"]] = row["operation"] == "add"
    return sorted(slug for slug, is_member in member.items() if is_member and slug in existing)


def existing_segments(api: ApiClient) -> set[str]:
    response = api.get("/segments", params={"limit": 1000}, timeout=REQUEST_TIMEOUT_S)
    assert response.status_code == 200, response.text
    return {segment["slug"] for segment in response.json()["segments"]}


def final_segments(api: ApiClient, user_id: int) -> list[str]:
    response = api.get(f"/users/{user_id}/segments", timeout=REQUEST_TIMEOUT_S)
    assert response.status_code == 200, response.text
    return list(response.json()["segments"])


def response_problems(call: Call) -> list[str]:
    """What a single 200 answer says about itself that cannot all be true."""
    problems: list[str] = []
    added, removed = set(call.body.get("add", [])), set(call.body.get("remove", []))
    answer = call.answer
    reported = {name: set(answer.get(name, [])) for name in ("added", "removed", "unchanged")}
    segments = set(answer.get("segments", []))
    if answer.get("user_id") != call.user_id:
        problems.append("wrong user_id")
    if reported["added"] | reported["removed"] | reported["unchanged"] != added | removed:
        problems.append("added/removed/unchanged do not cover exactly the named slugs")
    if not reported["added"] <= added or not reported["removed"] <= removed:
        problems.append("a slug reported as changed the wrong way")
    if not added <= segments or segments & removed:
        problems.append("`segments` disagrees with the request it answers")
    if not segments <= set(SLUGS):
        problems.append("`segments` holds a slug nobody created")
    return [f"{call.user_id} {call.body} -> {answer}: {problem}" for problem in problems]


def last_word_problems(calls: list[Call], final: dict[int, list[str]]) -> list[str]:
    """The unambiguously last successful response naming a slug for a user agrees with the final state."""
    problems: list[str] = []
    lifecycle = [call for call in calls if call.kind in ("create", "delete") and call.status in (201, 204)]
    for user_id in USERS:
        for slug in SLUGS:
            naming = [
                call
                for call in calls
                if call.kind == "update"
                and call.status == 200
                and call.user_id == user_id
                and slug in call.body.get("add", []) + call.body.get("remove", [])
            ]
            if not naming:
                continue
            last = max(naming, key=lambda call: call.started)
            if any(other is not last and other.ended > last.started for other in naming):
                continue  # overlapping requests: either may have taken effect last
            if any(event.slug == slug and event.ended > last.started for event in lifecycle):
                continue  # the segment was deleted or made again after (or during) it
            wanted = slug in last.body.get("add", [])
            if (slug in final[user_id]) != wanted:
                problems.append(f"user {user_id} {slug}: last response {last.answer}, final {final[user_id]}")
    return problems


def wall(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S.%f")


def explain(
    divergences: dict[int, tuple[list[str], list[str]]],
    history: dict[int, list[dict[str, str]]],
    calls: list[Call],
) -> str:
    """The history rows and the requests behind each diverging (user, slug), to reproduce a failure."""
    lines: list[str] = []
    for user_id, (final, replayed) in divergences.items():
        for slug in sorted(set(final) ^ set(replayed)):
            lines.append(f"user {user_id} {slug}: final {slug in final}, replay {slug in replayed}")
            lines += [f"  row {row}" for row in history[user_id] if row["segment"] == slug]
            for call in sorted(calls, key=lambda call: call.started):
                named = call.body.get("add", []) + call.body.get("remove", [])
                if call.slug == slug or (call.user_id == user_id and slug in named):
                    span = f"{wall(call.started)}-{wall(call.ended)}"
                    lines.append(f"  {span} {call.kind} {call.status} {call.body} {call.answer}")
    return "\n".join(lines)


def test_concurrent_updates_match_history_and_promises(
    api: ApiClient, make_api: Callable[[], ApiClient]
) -> None:
    started_at = datetime.now(UTC)
    for slug in SLUGS:
        assert api.post("/segments", json={"slug": slug}).status_code == 201
    calls: list[Call] = []
    failures: list[str] = []
    deleted: set[str] = set()
    lock = threading.Lock()
    threads = [
        threading.Thread(target=client, args=(make_api, index, deleted, lock, calls, failures))
        for index in range(THREADS)
    ]
    load_started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load_seconds = time.monotonic() - load_started
    assert failures == []

    # (3) no 500, and nothing outside the statuses the SPEC gives these routes
    allowed = {"update": UPDATE_STATUSES, "create": CREATE_STATUSES, "delete": DELETE_STATUSES}
    unexpected = [
        (call.kind, call.status, call.body, call.answer)
        for call in calls
        if call.status not in allowed[call.kind]
    ]
    assert unexpected == []
    # (2) every 503 says when to come back
    busy = [call for call in calls if call.status == 503]
    assert [call for call in busy if not call.retry_after] == []
    # (4, per answer) each 200 is consistent with itself and its request
    successes = [call for call in calls if call.kind == "update" and call.status == 200]
    assert [problem for call in successes for problem in response_problems(call)] == []
    # a 404 names only slugs it was asked about
    for call in calls:
        if call.kind == "update" and call.status == 404:
            named = set(call.body.get("add", []) + call.body.get("remove", []))
            assert call.answer.get("missing") and set(call.answer["missing"]) <= named, call.answer

    # Wait for the stream (history rows, deletion clean-up) to settle: the replay matches every user
    periods = months_between(started_at, datetime.now(UTC))
    settle_started = time.monotonic()
    while True:
        existing = existing_segments(api)
        final = {user_id: final_segments(api, user_id) for user_id in USERS}
        history = {user_id: history_rows(api, periods, user_id) for user_id in USERS}
        divergences = {
            user_id: (final[user_id], replay(history[user_id], existing))
            for user_id in USERS
            if final[user_id] != replay(history[user_id], existing)
        }
        if not divergences or time.monotonic() - settle_started > SETTLE_TIMEOUT_S:
            break
        time.sleep(0.5)
    settle_seconds = time.monotonic() - settle_started

    print(
        f"\nconcurrency over HTTP: {len(calls)} requests ({len(successes)} updates answered 200, "
        f"{sum(call.status == 404 for call in calls)} 404, {len(busy)} 503, "
        f"{sum(call.kind != 'update' for call in calls)} deletes/creates) in {load_seconds:.1f} s; "
        f"settled in {settle_seconds:.1f} s; {len(divergences)} users diverge"
    )
    # (1) the final state is the history replayed, for every user
    assert divergences == {}, explain(divergences, history, calls)
    for user_id in USERS:
        assert set(final[user_id]) <= existing, (user_id, final[user_id], existing)
    # (2, 4) the manual history rows are exactly the changes that 200s reported: none from a 503 or 404,
    # none lost, none twice
    promised: Counter[tuple[int, str, str]] = Counter(
        (int(call.user_id or 0), str(slug), operation)
        for call in successes
        for operation, key in (("add", "added"), ("remove", "removed"))
        for slug in call.answer[key]
    )
    recorded = Counter(
        (user_id, row["segment"], row["operation"])
        for user_id in USERS
        for row in history[user_id]
        if row["reason"] == "manual"
    )
    assert recorded == promised, (recorded - promised, promised - recorded)
    assert {row["reason"] for user_id in USERS for row in history[user_id]} <= {"manual", "segment_deleted"}
    # (4) the last word on each (user, slug) is the final membership
    assert last_word_problems(calls, final) == []
