"""`--dist loadgroup` that keeps its promise under pytest 9.2.

xdist 3.8 groups `xdist_group` tests by appending `@group` to each test's id on the workers, in a field
pytest 9.2 no longer reads, so every grouped test became a unit of its own and the groups were spread
over the workers (the deployed tier started two emulators on one machine). This scheduler, given to
xdist through its public `pytest_xdist_make_scheduler` hook, makes the units from the tests' paths
instead; tests/unit/test_xdist_groups.py checks that every `xdist_group` mark agrees with them.
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling

# Path prefix of a test id -> its group: every test of a group runs on the same worker, in order.
GROUPS = {
    "tests/e2e/": "deployed",  # one emulator per machine: the whole deployed tier on one worker
    "tests/sql/": "sql",
    "tests/integration/test_benchmarks_smoke.py": "benchmarks",
}


def group_of(nodeid: str) -> str | None:
    return next((group for prefix, group in GROUPS.items() if nodeid.startswith(prefix)), None)


class GroupScheduling(LoadScopeScheduling):
    """A group's tests form one unit of work; every other test is a unit of its own."""

    def _split_scope(self, nodeid: str) -> str:  # xdist's own schedulers extend it this way
        group = group_of(nodeid)
        return f"group:{group}" if group else nodeid
