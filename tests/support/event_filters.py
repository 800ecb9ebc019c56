"""Lambda event-filtering patterns (the EventBridge pattern syntax), applied to stream records.

A record is kept when any pattern matches; within a pattern every field must match, and a
field matches when any of its listed conditions does.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

_MISSING = object()
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "=": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class PatternError(ValueError):
    """The pattern is not valid filter syntax; Lambda rejects such a mapping at deploy time."""


def matches_any(patterns: list[dict[str, Any]], record: dict[str, Any]) -> bool:
    return not patterns or any(matches(pattern, record) for pattern in patterns)


def matches(pattern: dict[str, Any], event: Any) -> bool:
    for key, expected in pattern.items():
        if key == "$or":
            if not any(matches(branch, event) for branch in expected):
                return False
            continue
        value = event.get(key, _MISSING) if isinstance(event, dict) else _MISSING
        if isinstance(expected, dict):
            if value is _MISSING or not matches(expected, value):
                return False
        elif isinstance(expected, list):
            if not _field_matches(expected, value):
                return False
        else:
            raise PatternError(f"the value of {key!r} must be an object or an array")
    return True


def _field_matches(conditions: list[Any], value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    return any(
        _condition_matches(condition, item, value is _MISSING) for condition in conditions for item in values
    )


def _condition_matches(condition: Any, value: Any, missing: bool) -> bool:
    if not isinstance(condition, dict):
        return not missing and value == condition and type(value) is type(condition)
    if len(condition) != 1:
        raise PatternError(f"a condition has exactly one operator: {condition!r}")
    ((name, argument),) = condition.items()
    if name == "exists":
        return missing is not bool(argument)
    if missing:
        return False
    if name == "prefix":
        return isinstance(value, str) and value.startswith(_text(argument))
    if name == "suffix":
        return isinstance(value, str) and value.endswith(_text(argument))
    if name == "equals-ignore-case":
        return isinstance(value, str) and value.lower() == str(argument).lower()
    if name == "anything-but":
        return not _anything_but_hits(argument, value)
    if name == "numeric":
        return _numeric(argument, value)
    raise PatternError(f"unsupported filter operator {name!r}")


def _text(argument: Any) -> str:
    # prefix/suffix accept {"equals-ignore-case": ...} too; plain strings are the common case.
    if isinstance(argument, str):
        return argument
    raise PatternError(f"expected a string, got {argument!r}")


def _anything_but_hits(argument: Any, value: Any) -> bool:
    if isinstance(argument, dict):
        return _condition_matches(argument, value, missing=False)
    excluded = argument if isinstance(argument, list) else [argument]
    return value in excluded


def _numeric(argument: list[Any], value: Any) -> bool:
    number = _as_number(value)
    if number is None:
        return False
    if len(argument) % 2:
        raise PatternError(f"numeric needs operator/value pairs: {argument!r}")
    pairs = zip(argument[::2], argument[1::2], strict=True)
    return all(_COMPARE[op](number, float(bound)) for op, bound in pairs)


def _as_number(value: Any) -> float | None:
    # DynamoDB numbers arrive as strings ({"N": "42"}); Lambda compares them numerically.
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
