"""Every xdist_group mark agrees with the groups the scheduler makes from the tests' paths."""

import pytest

from tests.support.xdist_groups import group_of


def test_every_grouped_test_is_in_the_group_its_path_gives(request: pytest.FixtureRequest) -> None:
    disagreeing = []
    for item in request.session.items:
        marks = {str(mark.args[0]) for mark in item.iter_markers("xdist_group")}
        expected = {group_of(item.nodeid)} - {None}
        if marks != expected:
            disagreeing.append((item.nodeid, marks, expected))
    assert disagreeing == []


def test_a_test_outside_every_group_is_in_none() -> None:
    assert group_of("tests/unit/test_buckets.py::test_x") is None
    assert group_of("tests/e2e/test_service_api.py::test_x") == "deployed"
