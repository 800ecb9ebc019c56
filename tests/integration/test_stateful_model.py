"""Model-based check of the whole API: a hypothesis state machine against an in-memory model of the SPEC.

Plain and percentage segments, one exclusion group, adds with ttl_seconds or expires_at, removes,
deletes with or without the background clean-up, a fake clock, reads, per-user reports (replayed,
they give the active set, and every line is a change: replayed up to any moment between two steps,
they give what the model held then) and all-users reports (row by row the per-user ones, less
derived rows).

SEGMENTS_SOAK_STEPS=N runs examples until at least N steps ran and prints "steps: X divergences: Y";
SEGMENTS_SOAK_SEED=S replays a soak (it prints its seed, drawn at random when none is given).
"""

import importlib
import itertools
import os
import random
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    get_state_machine_test,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from tests.conftest import BUCKET, TABLE

USERS = st.integers(1, 5)
PLAIN = ["A", "B", "C", "D"]
GROUP, GROUPED = "GRP", ["G1", "G2", "G3"]  # created only in the exclusion group GROUP
SLUGS = st.sampled_from(PLAIN)
PERCENTS = st.sampled_from([None, 0, 10, 25, 50, 100])
# None (permanent), ("ttl_seconds", s), or ("expires_at", s): the clock's now + s (0 is not future: 400)
LIFETIMES = st.sampled_from(
    [None, None, ("ttl_seconds", 30), ("ttl_seconds", 90), ("expires_at", 0), ("expires_at", 2),
     ("expires_at", 45.5), ("expires_at", 150)]
)  # fmt: skip
# An import file's lines: users, and lines it rejects ("01" is not canonical); blank lines are not lines
IMPORT_LINES = st.lists(
    st.one_of(USERS.map(str), st.sampled_from(["x", "01", "-1", "1e3", "", " "])), max_size=8
)
START = datetime(2025, 3, 1, tzinfo=UTC)
PERIOD = "2025-03"
BUCKETS = 10_000
HANDLERS = [
    "api_create_segment", "api_update_segment", "api_delete_segment", "api_update_user_segments",
    "api_get_user_segments", "api_history_report", "api_create_import", "api_get_import", "stream_table",
    "queue_cleanup", "queue_reports", "queue_imports", "scheduled_sweeper",
]  # fmt: skip
# Indexes lag the table by this much of the model's clock; before a report, the model lets this much
# time pass: past the clean-up's wait for its second walk (logic.cleanup.SETTLE) and the index lag.
INDEX_LAG = timedelta(seconds=2)
LOST_COMMIT_ANSWERS = 0.2  # of the TransactWriteItems the service sends
BACKGROUND_CATCHES_UP = timedelta(minutes=3)
STEPS = {"count": 0}
CHECKPOINT_AFTER = timedelta(seconds=0.25)  # steps act on whole or half seconds: never on a checkpoint


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


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".") + "Z"


def add_item(slug: str, life: tuple[str, float] | None, now: datetime) -> str | dict[str, Any]:
    if life is None:
        return slug
    if life[0] == "ttl_seconds":
        return {"slug": slug, "ttl_seconds": life[1]}
    return {"slug": slug, "expires_at": rfc3339(now + timedelta(seconds=life[1]))}


def csv_rows(text: str) -> list[tuple[str, ...]]:
    """(user_id, segment, operation, timestamp, reason) rows of a report."""
    header, *lines = text.splitlines()
    assert header == "user_id;segment;operation;timestamp;reason", text
    return [tuple(line.split(";")) for line in lines]


Range = tuple[str, int, int]  # seed, start, end in bucket units: members are start <= bucket < end


class Model:
    """SPEC semantics: explicit memberships and opt-outs win over buckets; expiry at now >= expires_at.

    A percentage segment holds [0, p) of its slug's buckets; one in GROUP holds a range of the group's
    buckets: the lowest free gap that fits, grown upward into free space directly above, trimmed at the
    top. Not in the SPEC, so as the service chose (docs/percentage-segments.md): an empty range holds
    nobody and sits at the start of the lowest free gap (0 when full); raising it places it again.
    """

    def __init__(self) -> None:
        self.segments: dict[str, Range | None] = {}
        self.explicit: dict[tuple[int, str], tuple[str, datetime | None]] = {}
        # (user, slug, deleted at) of bucket-only members of deleted segments: their segment_deleted
        # row is derived in per-user reports only (docs/percentage-segments.md)
        self.bucket_only_deleted: set[tuple[int, str, datetime]] = set()

    def active(self, user: int, now: datetime) -> list[str]:
        from logic.buckets import bucket_of

        result = []
        for slug, held in sorted(self.segments.items()):
            state = self.explicit.get((user, slug))
            if state is not None and state[0] == "member" and (state[1] is None or now < state[1]):
                result.append(slug)
            elif state is not None and state[0] == "out":
                continue
            elif held is not None and held[1] <= bucket_of(held[0], user) < held[2]:
                result.append(slug)
        return result

    def snapshot(self) -> "Model":
        """The memberships as they stand now (what holds until the next step)."""
        copy = Model()
        copy.segments, copy.explicit = dict(self.segments), dict(self.explicit)
        return copy

    def bucket_only(self, user: int, slug: str, now: datetime) -> bool:
        state = self.explicit.get((user, slug))
        explicit = state is not None and state[0] == "member" and (state[1] is None or now < state[1])
        return not explicit and slug in self.active(user, now)

    def gaps(self, but: str = "") -> list[tuple[int, int]]:
        taken = sorted(
            r[1:] for s, r in self.segments.items() if r and r[0] == GROUP and s != but and r[1] < r[2]
        )
        gaps, cursor = [], 0
        for start, end in taken:
            if start > cursor:
                gaps.append((cursor, start))
            cursor = end
        return gaps + ([(cursor, BUCKETS)] if cursor < BUCKETS else [])

    def place(self, width: int, but: str = "") -> Range | None:
        fitting = [start for start, end in self.gaps(but) if end - start >= width]
        if not fitting and width == 0:
            fitting = [0]  # a full group still takes an empty range
        return (GROUP, fitting[0], fitting[0] + width) if fitting else None

    def resize(self, slug: str, width: int) -> Range | None:
        held = self.segments[slug]
        assert held is not None
        _, start, end = held
        if start == end:
            return held if width == 0 else self.place(width, but=slug)
        # the free gap around the range once it is let go of: it may grow up to that gap's end
        top = next(gap_end for gap_start, gap_end in self.gaps(slug) if gap_start <= start < gap_end)
        return (GROUP, start, start + width) if start + width <= top else None


def bucket_range(held: Range | None) -> list[float] | None:
    return None if held is None else [held[1] / BUCKETS, held[2] / BUCKETS]


class LostCommitAnswers:
    """A share of the service's commits apply and their answer is lost (a read timeout after the
    commit), through botocore's public hooks: the service must send them again, same token."""

    def __init__(self, rng: random.Random, rate: float) -> None:
        self.rng, self.rate, self.lost = rng, rate, 0

    def install(self, client: Any) -> None:
        client.meta.events.register_last(
            "after-call.dynamodb.TransactWriteItems", self._lose, unique_id="model-lost-commits"
        )

    def uninstall(self, client: Any) -> None:
        client.meta.events.unregister(
            "after-call.dynamodb.TransactWriteItems", unique_id="model-lost-commits"
        )

    def _lose(self, http_response: Any, **_: Any) -> None:
        if http_response.status_code < 300 and self.rng.random() < self.rate:
            self.lost += 1
            raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")


class Machine(RuleBasedStateMachine):
    named = Bundle("named")  # slugs created at least once (some deleted since), and one never created

    def __init__(self) -> None:
        super().__init__()
        import boto3
        from moto import mock_aws

        from tests.conftest import INDEXES, forget_containers, service_client
        from tests.integration.test_history_and_reports import History
        from tests.support.api import Api
        from tests.support.atomic_moto import make_dynamodb_requests_atomic
        from tests.support.background import Background, create_queues
        from tests.support.lagging_index import LaggingIndexes
        from tests.support.table import create_table
        from tests.support.token_idempotency import CommittedTokens

        make_dynamodb_requests_atomic()
        self.mock = mock_aws()
        self.mock.start()
        create_table(boto3.client("dynamodb"), TABLE)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        create_queues(boto3.client("sqs"), TABLE)
        forget_containers()  # every example is a new table: what a container knew was another's
        self.clock = FakeClock()
        self.clock.install()
        client = service_client()
        self.indexes = LaggingIndexes(TABLE, INDEX_LAG.total_seconds(), lambda: self.clock.now.timestamp())
        self.indexes.install(client)
        INDEXES.append(self.indexes)
        self.tokens = CommittedTokens().install(client)
        # Every commit's answer may be lost (a timeout after it applied): the service sends it again
        self.lost = LostCommitAnswers(random.Random(13), LOST_COMMIT_ANSWERS)
        self.lost.install(client)
        self.api = Api()
        self.background = Background(TABLE)
        self.history = History(self.background)
        self.model = Model()
        # (moment, memberships then): a moment between two steps, when nothing but expiries changes
        self.checkpoints: list[tuple[datetime, Model]] = []
        # (slug, when) of deletions whose clean-up may not have stored every member's row yet: its
        # first walk cannot see members the index does not show yet, its second is due minutes later
        self.cleaning: set[tuple[str, datetime]] = set()

    def teardown(self) -> None:
        from tests.conftest import INDEXES, forget_containers, service_client

        INDEXES.remove(self.indexes)
        self.lost.uninstall(service_client())
        self.indexes.uninstall(service_client())
        self.tokens.uninstall(service_client())
        self.clock.uninstall()
        forget_containers()
        self.mock.stop()

    def step(self) -> None:
        STEPS["count"] += 1
        self.checkpoints.append((self.clock.now + CHECKPOINT_AFTER, self.model.snapshot()))
        self.clock.now += timedelta(seconds=1)

    @initialize(target=named, plain=st.lists(PERCENTS, max_size=3), grouped=st.lists(PERCENTS, max_size=3))
    def clock_reaches_handlers(self, plain: list[int | None], grouped: list[int | None]) -> Any:
        answer = self.api.create_segment("Z0")
        assert answer.body["created_at"] == "2025-03-01T00:00:00Z", answer
        self.model.segments["Z0"] = None
        # a starting catalog, so that short runs reach ramps, gaps and deletions of percentage segments
        created = [self.create(slug, percent) for slug, percent in zip(PLAIN, plain, strict=False)]
        created += [
            self.create_in_group(slug, percent) for slug, percent in zip(GROUPED, grouped, strict=False)
        ]
        return multiple("Z0", "NEVER", *(slug for slug in created if isinstance(slug, str)))

    @rule(target=named, slug=SLUGS, percent=PERCENTS)
    def create(self, slug: str, percent: int | None) -> Any:
        self.step()
        answer = self.api.create_segment(slug, auto_percent=percent)
        if slug in self.model.segments:
            assert answer.status == 409, answer
            return multiple()
        held = None if percent is None else (slug, 0, percent * 100)
        assert answer.status == 201 and answer.body["bucket_range"] == bucket_range(held), answer
        self.model.segments[slug] = held
        return slug

    @rule(target=named, slug=st.sampled_from(GROUPED), percent=PERCENTS)
    def create_in_group(self, slug: str, percent: int | None) -> Any:
        self.step()
        answer = self.api.create_segment(slug, auto_percent=percent, exclusion_group=GROUP)
        if percent is None:  # exclusion_group needs auto_percent
            assert answer.status == 400, answer
            return multiple()
        if slug in self.model.segments:
            assert answer.status == 409, answer
            return multiple()
        held = self.model.place(percent * 100)
        if held is None:
            largest = max((end - start for start, end in self.model.gaps()), default=0)
            assert answer.status == 409 and answer.body["free_percent"] == largest / 100, answer
            return multiple()
        assert answer.status == 201 and answer.body["bucket_range"] == bucket_range(held), answer
        self.model.segments[slug] = held
        return slug

    @rule(slug=named, percent=PERCENTS, description=st.booleans())
    def patch(self, slug: str, percent: int | None, description: bool) -> None:
        self.step()
        fields: dict[str, Any] = {"description": "d"} if description else {"auto_percent": percent}
        answer = self.api.patch_segment(slug, **fields)
        if slug not in self.model.segments:
            assert answer.status == 404, answer
            return
        held = self.model.segments[slug]
        if not description and slug in GROUPED:
            if percent is None:  # a segment in an exclusion group needs auto_percent
                assert answer.status == 400, answer
                return
            held = self.model.resize(slug, percent * 100)
            if held is None:  # no free space directly above; free_percent for a raise is the service's choice
                assert answer.status == 409 and answer.body["free_percent"] < percent, answer
                return
        elif not description:
            held = None if percent is None else (slug, 0, percent * 100)
        assert answer.status == 200 and answer.body["bucket_range"] == bucket_range(held), answer
        self.model.segments[slug] = held

    @rule(slug=named, cleanup=st.booleans())
    def delete(self, slug: str, cleanup: bool) -> None:
        self.step()
        answer = self.api.delete_segment(slug)
        if slug not in self.model.segments:
            assert answer.status == 404, answer
            return
        assert answer.status == 204, answer
        for user in range(1, 6):
            if self.model.bucket_only(user, slug, self.clock.now):
                self.model.bucket_only_deleted.add((user, slug, self.clock.now))
        del self.model.segments[slug]
        self.model.explicit = {key: v for key, v in self.model.explicit.items() if key[1] != slug}
        self.cleaning.add((slug, self.clock.now))
        if cleanup:
            self.background.settle()  # the job's first walk, at once: the index may not show everyone yet

    @rule(
        user=USERS,
        adds=st.lists(st.tuples(named, LIFETIMES), max_size=2, unique_by=lambda add: add[0]),
        removes=st.lists(named, max_size=2, unique=True),
    )
    def change(self, user: int, adds: list[tuple[str, tuple[str, float] | None]], removes: list[str]) -> None:
        self.step()
        slugs = [slug for slug, _ in adds] + removes
        now = self.clock.now
        body = [add_item(slug, life, now) for slug, life in adds]
        answer = self.api.change_user(user, add=body, remove=removes)
        # none named, a slug in both lists, or expires_at not in the future; nothing changes
        if not slugs or len(set(slugs)) != len(slugs) or any(life and life[1] <= 0 for _, life in adds):
            assert answer.status == 400, answer
            return
        missing = sorted(slug for slug in slugs if slug not in self.model.segments)
        if missing:
            assert answer.status == 404 and answer.body["missing"] == missing, answer
            return
        assert answer.status == 200, answer
        before = set(self.model.active(user, now))
        for slug, life in adds:
            self.model.explicit[(user, slug)] = (
                "member",
                None if life is None else now + timedelta(seconds=life[1]),
            )
        for slug in removes:
            if self.model.segments[slug] is not None:
                self.model.explicit[(user, slug)] = ("out", None)
            elif self.model.explicit.get((user, slug), ("none", None))[0] == "member":
                # an opt-out stored while the segment had a percentage stays: a ramp later keeps
                # the user out (docs/percentage-segments.md)
                del self.model.explicit[(user, slug)]
        after = self.model.active(user, now)
        assert answer.body["segments"] == after, (answer.body, after)
        assert answer.body["added"] == sorted(s for s, _ in adds if s not in before), answer.body
        assert answer.body["removed"] == sorted(s for s in removes if s in before), answer.body

    @rule(
        slug=named,
        remove=st.booleans(),
        life=LIFETIMES,
        header=st.booleans(),
        lines=IMPORT_LINES,
    )
    def import_users(
        self, slug: str, remove: bool, life: tuple[str, float] | None, header: bool, lines: list[str]
    ) -> None:
        """A bulk change: each user of the file as a one-slug change, the first line of a user deciding
        it, the others unchanged, bad lines rejected one by one; run to its end by the import jobs."""
        from tests.integration.test_imports import errors_of, upload

        self.step()
        now = self.clock.now
        fields: dict[str, Any] = {"mode": "remove" if remove else "add"}
        if life is not None:
            item = add_item(slug, life, now)
            assert isinstance(item, dict)
            fields.update({key: value for key, value in item.items() if key != "slug"})
        answer = self.api.create_import(slug, **fields)
        if (remove and life is not None) or (life is not None and life[1] <= 0):
            assert answer.status == 400, answer  # an expiry only with add, and in the future
            return
        if slug not in self.model.segments:
            assert answer.status == 404, answer
            return
        assert answer.status == 201 and answer.body["status"] == "awaiting_upload", answer
        upload(dict(answer.body), "".join(f"{line}\n" for line in ["user_id"] * header + lines))
        self.background.jobs("import")
        job = self.api.get_import(slug, answer.body["import_id"]).body

        first = 1 + header  # line numbers count every line, the header and blank ones too
        numbered = [(number, line) for number, line in enumerate(lines, first) if line.strip()]
        rejected = [number for number, line in numbered if not line.isdigit() or line != str(int(line))]
        users = list(dict.fromkeys(int(line) for number, line in numbered if number not in rejected))
        before = {user: set(self.model.active(user, now)) for user in users}
        for user in users:
            if not remove:
                self.model.explicit[(user, slug)] = (
                    "member",
                    None if life is None else now + timedelta(seconds=life[1]),
                )
            elif self.model.segments[slug] is not None:
                self.model.explicit[(user, slug)] = ("out", None)
            elif self.model.explicit.get((user, slug), ("none", None))[0] == "member":
                del self.model.explicit[(user, slug)]
        applied = sum((slug in before[user]) != (slug in self.model.active(user, now)) for user in users)
        counts = (job["status"], job["lines"], job["applied"], job["unchanged"], job["rejected"])
        assert counts == (
            "done",
            len(numbered),
            applied,
            len(numbered) - applied - len(rejected),
            len(rejected),
        ), job
        assert (
            [int(row["line"]) for row in errors_of(job)] == rejected
            if rejected
            else job["errors_url"] is None
        ), job

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

        self.step()
        self.background_catches_up(cleanup=True)
        _, text = self.history.report(period=PERIOD, user_id=user)
        replay: set[str] = set()
        for user_id, slug, operation, _ in rows_of(text):
            assert int(user_id) == user
            (replay.add if operation == "add" else replay.discard)(slug)
        assert sorted(replay) == self.model.active(user, self.clock.now), text
        self.tells_every_change(user, text)
        _, everyone = self.history.report(period=PERIOD)
        assert [row for row in csv_rows(everyone) if row[0] == str(user)] == self.own_rows(user, text), (
            everyone
        )

    @rule(cleanup=st.booleans())
    def report_everyone(self, cleanup: bool) -> None:
        """The all-users report is each user's report less its derived rows, in the same order."""
        self.step()
        self.background_catches_up(cleanup)
        answer, text = self.history.report(period=PERIOD)
        everyone = csv_rows(text)
        assert answer["user_id"] is None and answer["rows"] == len(everyone), answer
        for user in range(1, 6):
            _, text = self.history.report(period=PERIOD, user_id=user)
            self.tells_every_change(user, text)
            stored = self.stored_by_now([row for row in everyone if row[0] == str(user)])
            assert stored == self.stored_by_now(self.own_rows(user, text)), (everyone, text)

    def background_catches_up(self, cleanup: bool) -> None:
        """Time passes: the indexes catch up and, with `cleanup`, every job finishes (the clean-ups'
        second walks are due) and the expired memberships are ended, as they would be a few minutes
        later; then every live segment's member counts are the model's."""
        self.clock.now += BACKGROUND_CATCHES_UP
        self.background.settle()
        if cleanup:
            self.background.sweep()
            self.background.settle()
            self.cleaning.clear()
            self.counts_match_the_model()

    def counts_match_the_model(self) -> None:
        now = self.clock.now
        for slug in self.model.segments:
            states = [state for (_, segment), state in self.model.explicit.items() if segment == slug]
            explicit = sum(kind == "member" and (until is None or now < until) for kind, until in states)
            opted_out = sum(kind == "out" for kind, _ in states)
            members = self.api.get_segment(slug).body["members"]
            assert (members["explicit"], members["opted_out"]) == (explicit, opted_out), (slug, members)

    def tells_every_change(self, user: int, text: str) -> None:
        """Every line of a user's report is a change (an add while out, a remove while in), and the
        lines up to any moment between two steps replay to what the model held then."""
        rows = [(datetime.fromisoformat(row[3]), row[1], row[2]) for row in csv_rows(text)]
        replay: set[str] = set()
        lines = iter(rows)
        line = next(lines, None)
        for moment, then in self.checkpoints:
            while line is not None and line[0] <= moment:
                at, slug, operation = line
                assert (operation == "add") != (slug in replay), (
                    f"{operation} {slug} at {at} is no change",
                    text,
                )
                (replay.add if operation == "add" else replay.discard)(slug)
                line = next(lines, None)
            assert sorted(replay) == then.active(user, moment), (user, moment, text)

    def stored_by_now(self, rows: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
        """Rows less the `segment_deleted` rows of deletions still being cleaned up: a user's report
        derives them at once, the all-users report has them once the clean-up has stored them."""
        return [
            row
            for row in rows
            if not (row[4] == "segment_deleted" and (row[1], datetime.fromisoformat(row[3])) in self.cleaning)
        ]

    def own_rows(self, user: int, text: str) -> list[tuple[str, ...]]:
        """A per-user report's rows less those derived for it alone: auto, and segment_deleted of
        bucket-only members (docs/percentage-segments.md)."""
        return [
            row
            for row in csv_rows(text)
            if row[4] != "auto"
            and not (
                row[4] == "segment_deleted"
                and (user, row[1], datetime.fromisoformat(row[3])) in self.model.bucket_only_deleted
            )
        ]

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
    base_seed = int(os.environ.get("SEGMENTS_SOAK_SEED") or random.randrange(2**32))
    print(f"\nsoak seed: {base_seed} (replay: make soak SOAK_SEED={base_seed} SOAK_STEPS={soak})")
    divergences = 0
    try:
        for round_number in itertools.count():
            if STEPS["count"] >= soak:
                break
            examples = max(1, (soak - STEPS["count"]) // steps + 1)
            model_test = get_state_machine_test(
                Machine,
                settings=settings(max_examples=examples, database=None, **options),  # type: ignore[arg-type]
            )
            seed(base_seed + round_number)(model_test)()
    except Exception:
        divergences = 1
        raise
    finally:
        print(f"\nsteps: {STEPS['count']} divergences: {divergences} seed: {base_seed}")
    if divergences:
        pytest.fail("divergence")
