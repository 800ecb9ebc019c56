"""Model-based check of the whole API: a hypothesis state machine against an in-memory model of the SPEC.

SEGMENTS_SOAK_STEPS=N runs examples until at least N steps ran and prints "steps: X divergences: Y".
"""

import importlib
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from tests.conftest import BUCKET, TABLE

USERS = st.integers(1, 5)
SLUGS = st.sampled_from(["A", "B", "C", "D"])
PERCENTS = st.sampled_from([None, 0, 10, 50, 100])
TTLS = st.sampled_from([None, None, 30, 90])
START = datetime(2025, 3, 1, tzinfo=UTC)
HANDLERS = [
    "api_create_segment", "api_update_segment", "api_delete_segment", "api_update_user_segments",
    "api_get_user_segments", "api_history_report", "stream_history", "stream_cleanup_members",
]  # fmt: skip
STEPS = {"count": 0}


class FakeClock:
    def __init__(self) -> None:
        self.now = START
        self.saved: list[tuple[Any, Any]] = []

    def install(self) -> None:
        import shared.clock

        for name in HANDLERS:
            importlib.import_module(f"handlers.{name}")
        original = shared.clock.utc_now
        for module in list(sys.modules.values()):
            if module is not None and getattr(module, "utc_now", None) is original:
                self.saved.append((module, original))
                module.utc_now = self.utc_now  # type: ignore[attr-defined]

    def uninstall(self) -> None:
        for module, original in self.saved:
            module.utc_now = original

    def utc_now(self) -> datetime:
        return self.now


class Model:
    """SPEC semantics: explicit memberships and opt-outs win over buckets; expiry at now >= expires_at."""

    def __init__(self) -> None:
        self.segments: dict[str, int | None] = {}  # slug -> bucket end (p*100) or None
        self.explicit: dict[tuple[int, str], tuple[str, datetime | None]] = {}

    def active(self, user: int, now: datetime) -> list[str]:
        from logic.buckets import bucket_of

        result = []
        for slug, end in sorted(self.segments.items()):
            state = self.explicit.get((user, slug))
            if state is not None and state[0] == "member" and (state[1] is None or now < state[1]):
                result.append(slug)
            elif state is not None and state[0] == "out":
                continue
            elif end is not None and bucket_of(slug, user) < end:
                result.append(slug)
        return result


class Machine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        import boto3
        from moto import mock_aws

        from dal import factory
        from local.atomic_moto import make_dynamodb_requests_atomic
        from tests.integration.test_history_and_reports import History
        from tests.support.api import Api
        from tests.support.streams import StreamTap
        from tests.support.table import create_table

        make_dynamodb_requests_atomic()
        self.mock = mock_aws()
        self.mock.start()
        create_table(boto3.client("dynamodb"), TABLE)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        factory.get_catalog.cache_clear()
        self.clock = FakeClock()
        self.clock.install()
        self.api = Api()
        self.history = History()
        self.cleanup_tap = StreamTap(TABLE)
        self.model = Model()

    def teardown(self) -> None:
        from dal import factory

        self.clock.uninstall()
        factory.get_catalog.cache_clear()
        self.mock.stop()

    def step(self) -> None:
        STEPS["count"] += 1
        self.clock.now += timedelta(seconds=1)

    @initialize()
    def clock_reaches_handlers(self) -> None:
        answer = self.api.create_segment("Z0")
        assert answer.body["created_at"] == "2025-03-01T00:00:00Z", answer
        self.model.segments["Z0"] = None

    @rule(slug=SLUGS, percent=PERCENTS)
    def create(self, slug: str, percent: int | None) -> None:
        self.step()
        answer = self.api.create_segment(slug, auto_percent=percent)
        if slug in self.model.segments:
            assert answer.status == 409, answer
            return
        assert answer.status == 201, answer
        self.model.segments[slug] = None if percent is None else percent * 100

    @rule(slug=SLUGS, percent=PERCENTS, description=st.booleans())
    def patch(self, slug: str, percent: int | None, description: bool) -> None:
        self.step()
        fields: dict[str, Any] = {"description": "d"} if description else {"auto_percent": percent}
        answer = self.api.patch_segment(slug, **fields)
        if slug not in self.model.segments:
            assert answer.status == 404, answer
            return
        assert answer.status == 200, answer
        if not description:
            self.model.segments[slug] = None if percent is None else percent * 100

    @rule(slug=SLUGS, cleanup=st.booleans())
    def delete(self, slug: str, cleanup: bool) -> None:
        from tests.integration.test_segment_deletion import run_cleanup

        self.step()
        answer = self.api.delete_segment(slug)
        if slug not in self.model.segments:
            assert answer.status == 404, answer
            return
        assert answer.status == 204, answer
        del self.model.segments[slug]
        self.model.explicit = {key: v for key, v in self.model.explicit.items() if key[1] != slug}
        if cleanup:
            run_cleanup(self.cleanup_tap)

    @rule(user=USERS, adds=st.lists(st.tuples(SLUGS, TTLS), max_size=2), removes=st.lists(SLUGS, max_size=2))
    def change(self, user: int, adds: list[tuple[str, int | None]], removes: list[str]) -> None:
        self.step()
        named = [slug for slug, _ in adds] + removes
        if not named or len(set(named)) != len(named):
            return
        body = [slug if ttl is None else {"slug": slug, "ttl_seconds": ttl} for slug, ttl in adds]
        answer = self.api.change_user(user, add=body, remove=removes)
        missing = sorted(slug for slug in named if slug not in self.model.segments)
        if missing:
            assert answer.status == 404 and answer.body["missing"] == missing, answer
            return
        assert answer.status == 200, answer
        now = self.clock.now
        before = set(self.model.active(user, now))
        for slug, ttl in adds:
            self.model.explicit[(user, slug)] = (
                "member",
                None if ttl is None else now + timedelta(seconds=ttl),
            )
        for slug in removes:
            if self.model.segments[slug] is not None:
                self.model.explicit[(user, slug)] = ("out", None)
            else:
                self.model.explicit.pop((user, slug), None)
        after = self.model.active(user, now)
        assert answer.body["segments"] == after, (answer.body, after)
        assert answer.body["added"] == sorted(s for s, _ in adds if s not in before), answer.body
        assert answer.body["removed"] == sorted(s for s in removes if s in before), answer.body

    @rule(seconds=st.sampled_from([1, 29, 30, 60, 600]))
    def advance(self, seconds: int) -> None:
        self.step()
        self.clock.now += timedelta(seconds=seconds)

    @rule(user=USERS)
    def read(self, user: int) -> None:
        self.step()
        assert self.api.segments_of(user) == self.model.active(user, self.clock.now)

    @rule(user=USERS)
    def report(self, user: int) -> None:
        from tests.integration.test_history_and_reports import rows_of
        from tests.integration.test_segment_deletion import run_cleanup

        self.step()
        run_cleanup(self.cleanup_tap)
        _, text = self.history.report(period="2025-03", user_id=user)
        replay: set[str] = set()
        for user_id, slug, operation, _ in rows_of(text):
            assert int(user_id) == user
            (replay.add if operation == "add" else replay.discard)(slug)
        assert sorted(replay) == self.model.active(user, self.clock.now), text

    @invariant()
    def reads_match_the_model(self) -> None:
        for user in (1, 3):
            assert self.api.segments_of(user) == self.model.active(user, self.clock.now)


def test_the_api_follows_the_model() -> None:
    soak = int(os.environ.get("SEGMENTS_SOAK_STEPS", "0"))
    steps = 20
    options = dict(deadline=None, stateful_step_count=steps, suppress_health_check=list(HealthCheck))
    STEPS["count"] = 0
    if not soak:
        run_state_machine_as_test(Machine, settings=settings(max_examples=5, **options))  # type: ignore[arg-type]
        return
    divergences = 0
    try:
        while STEPS["count"] < soak:
            examples = max(1, (soak - STEPS["count"]) // steps + 1)
            run_state_machine_as_test(
                Machine,
                settings=settings(max_examples=examples, database=None, **options),  # type: ignore[arg-type]
            )
    except Exception:
        divergences = 1
        raise
    finally:
        print(f"\nsteps: {STEPS['count']} divergences: {divergences}")
    if divergences:
        pytest.fail("divergence")
