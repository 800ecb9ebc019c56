"""Lambda event-filter patterns, as the stream mappings apply them."""

import json

import pytest

from tests.support.event_filters import PatternError, matches, matches_any

CLEANUP = json.loads(
    '{"dynamodb": {"NewImage": {"entity": {"S": ["GENERATION"]}, "cleanup": {"S": ["pending"]}}}}'
)


def record(**image: dict[str, str]) -> dict[str, object]:
    return {"eventName": "MODIFY", "dynamodb": {"NewImage": image}}


def test_exact_values_match() -> None:
    assert matches(CLEANUP, record(entity={"S": "GENERATION"}, cleanup={"S": "pending"}))


def test_a_different_value_does_not_match() -> None:
    assert not matches(CLEANUP, record(entity={"S": "GENERATION"}, cleanup={"S": "done"}))


def test_a_missing_field_does_not_match() -> None:
    assert not matches(CLEANUP, {"eventName": "REMOVE", "dynamodb": {"OldImage": {}}})


def test_prefix() -> None:
    assert matches({"eventName": [{"prefix": "MOD"}]}, record())
    assert not matches({"eventName": [{"prefix": "INS"}]}, record())


def test_exists() -> None:
    pattern = {"dynamodb": {"NewImage": {"ttl": [{"exists": True}]}}}
    assert matches(pattern, record(ttl={"N": "5"}))
    assert not matches(pattern, record())
    assert matches({"dynamodb": {"NewImage": {"ttl": [{"exists": False}]}}}, record())


def test_anything_but() -> None:
    pattern = {"eventName": [{"anything-but": ["REMOVE"]}]}
    assert matches(pattern, record())
    assert not matches(pattern, {"eventName": "REMOVE"})


def test_numeric_on_dynamodb_number_strings() -> None:
    pattern = {"dynamodb": {"NewImage": {"n": {"N": [{"numeric": [">=", 10, "<", 20]}]}}}}
    assert matches(pattern, record(n={"N": "10"}))
    assert not matches(pattern, record(n={"N": "20"}))


def test_any_of_several_values_matches() -> None:
    assert matches({"eventName": ["INSERT", "MODIFY"]}, record())


def test_or_of_patterns() -> None:
    assert matches({"$or": [{"eventName": ["INSERT"]}, {"eventName": ["MODIFY"]}]}, record())


def test_several_filters_are_alternatives_and_none_means_everything() -> None:
    assert matches_any([{"eventName": ["INSERT"]}, {"eventName": ["MODIFY"]}], record())
    assert matches_any([], record())


def test_a_bare_value_is_invalid_syntax() -> None:
    with pytest.raises(PatternError):
        matches({"eventName": "MODIFY"}, record())
