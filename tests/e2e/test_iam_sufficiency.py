"""IAM proven sufficient as deployed: over the whole run, no call any function made was denied.

The emulator enforces each function's own policy (AUTH=true), so a missing permission shows as an
AccessDenied in the function's log (CloudWatch Logs) or in the emulator's own log, and the stack's
behaviour breaks with it. This module runs last (tests/e2e/conftest.py), after every other test and
every events/ file have driven every function. Excess is checked by tests/integration/test_least_privilege.py.
"""

from __future__ import annotations

import re

import pytest

from local.stack import DeployedStack
from tests.support.deployed import function_log_groups, invocations, log_messages

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("deployed")]

DENIAL = re.compile(
    r"AccessDenied|not authorized to perform|explicit deny|UnauthorizedOperation", re.IGNORECASE
)
# Seen on this stack before the clean-up function was allowed its tombstones' PutItem.
A_REAL_DENIAL = (
    "pynamodb.exceptions.PutError: Failed to put item: An error occurred (AccessDeniedException) on "
    "request () on table (segments-Table-559B73E7FF51E) when calling the PutItem operation: User: "
    "arn:aws:sts::000000000000:assumed-role/segments-CleanupMembersFunctionRole-604DEA47CC1C9/"
    "segments-CleanupMembersFunction-A75A6D9B3590C is not authorized to perform: dynamodb:PutItem "
    "because no identity-based policy allows the dynamodb:PutItem action"
)


def denials(lines: list[str]) -> list[str]:
    return [line for line in lines if DENIAL.search(line)]


def test_the_denial_pattern_finds_the_emulators_denials() -> None:
    assert denials(["START RequestId: 1", A_REAL_DENIAL, "REPORT RequestId: 1"]) == [A_REAL_DENIAL]


def test_every_function_ran_during_the_deployed_run(deployed_stack: DeployedStack) -> None:
    never = [name for name in function_log_groups(deployed_stack) if invocations(deployed_stack, name) == 0]
    assert never == []


def test_no_function_was_denied_any_call(deployed_stack: DeployedStack) -> None:
    found = {
        name: denials(log_messages(deployed_stack, group))
        for name, group in function_log_groups(deployed_stack).items()
    }
    assert {name: lines[:3] for name, lines in found.items() if lines} == {}


def test_the_emulator_logged_no_denial(deployed_stack: DeployedStack) -> None:
    assert denials(deployed_stack.emulator.log().splitlines())[:5] == []
