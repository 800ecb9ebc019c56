"""Lambda SnapStart runtime hooks; template.yaml turns SnapStart on for the API functions.

With SnapStart, Lambda runs a function's init once, when a version is published, snapshots the
process and resumes every new instance from that one snapshot. Before the snapshot a function builds
what its first request would otherwise build (settings, botocore clients, compiled schemas), all
without a network call, so the snapshot holds no open connection. After each restore `random` is
reseeded: every instance resumed from one snapshot would otherwise draw the same jitter for its
write retries. Nothing else unique is made at init: uuid4, botocore's idempotency tokens and the
X-Ray SDK's ids read os.urandom at each call, and botocore refreshes expired credentials itself.

The hooks are registered with snapshot_restore_py, which Lambda's Python runtimes ship (and
requirements-dev.txt installs for the tests). Where it is missing, no runtime will snapshot the
process and there is nothing to register.
"""

import random
from collections.abc import Callable

try:
    from snapshot_restore_py import register_after_restore, register_before_snapshot
except ImportError:  # not a Lambda runtime: nothing here ever takes a snapshot
    HOOKS_AVAILABLE = False
else:
    HOOKS_AVAILABLE = True


def prepare_for_snapshot(*warm_ups: Callable[[], object]) -> None:
    """Called once by a handler module: its warm-ups run before the snapshot, the reseed after restore."""
    if HOOKS_AVAILABLE:
        register_before_snapshot(before_snapshot, *warm_ups)
        register_after_restore(after_restore)


def before_snapshot(*warm_ups: Callable[[], object]) -> None:
    """Build, once, what every instance resumed from the snapshot would otherwise build on its first
    request. Each warm-up must make no network call: a connection in the snapshot would be resumed,
    long after, by instances on other hosts."""
    for warm_up in warm_ups:
        warm_up()


def after_restore() -> None:
    """Each restored instance gets entropy of its own (random.seed() reads os.urandom)."""
    random.seed()
