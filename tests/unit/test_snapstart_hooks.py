"""SnapStart's hooks (functions/shared/snapstart.py): every instance resumed from one snapshot must
draw its own random numbers, since the write retries' jitter comes from `random`."""

import random

from shared.snapstart import after_restore, before_snapshot


def draws_of_an_instance_resumed_from(snapshot: object, restored: bool) -> list[float]:
    random.setstate(snapshot)  # type: ignore[arg-type]  # the process memory every instance resumes with
    if restored:
        after_restore()
    return [random.uniform(0, 0.01 * 2**attempt) for attempt in range(6)]  # logic.memberships' jitter


def test_instances_resumed_from_one_snapshot_repeat_its_random_numbers_without_the_hook() -> None:
    snapshot = random.getstate()
    first = draws_of_an_instance_resumed_from(snapshot, restored=False)
    assert draws_of_an_instance_resumed_from(snapshot, restored=False) == first


def test_after_restore_gives_each_resumed_instance_numbers_of_its_own() -> None:
    snapshot = random.getstate()
    first = draws_of_an_instance_resumed_from(snapshot, restored=True)
    second = draws_of_an_instance_resumed_from(snapshot, restored=True)
    assert first != second


def test_before_snapshot_runs_each_warm_up_once_in_order() -> None:
    ran: list[str] = []
    before_snapshot(lambda: ran.append("store"), lambda: ran.append("schemas"))
    assert ran == ["store", "schemas"]
