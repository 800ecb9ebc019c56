"""EventBridge schedule expressions, evaluated in UTC."""

from datetime import UTC, datetime, timedelta

import pytest

from local.cron import ScheduleError, parse


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_monthly_on_the_first() -> None:
    assert parse("cron(0 3 1 * ? *)").next_after(at("2023-08-29T10:00:00")) == at("2023-09-01T03:00:00")


def test_the_same_minute_is_not_repeated() -> None:
    assert parse("cron(0 3 1 * ? *)").next_after(at("2023-09-01T03:00:00")) == at("2023-10-01T03:00:00")


def test_steps_and_weekday_names() -> None:
    # Monday 2023-08-28 10:07 -> next quarter hour on a weekday
    expression = parse("cron(0/15 * ? * MON-FRI *)")
    assert expression.next_after(at("2023-08-28T10:07:00")) == at("2023-08-28T10:15:00")
    assert expression.next_after(at("2023-09-01T23:50:00")) == at("2023-09-04T00:00:00")  # Fri -> Mon


def test_day_of_week_counts_from_sunday() -> None:
    assert parse("cron(0 0 ? * 1 *)").next_after(at("2023-08-28T00:00:00")) == at("2023-09-03T00:00:00")


def test_last_day_of_month() -> None:
    assert parse("cron(0 0 L * ? *)").next_after(at("2024-02-01T00:00:00")) == at("2024-02-29T00:00:00")


def test_nth_weekday() -> None:
    assert parse("cron(0 0 ? * 6#1 *)").next_after(at("2023-08-28T00:00:00")) == at("2023-09-01T00:00:00")


def test_rate() -> None:
    assert parse("rate(5 minutes)").next_after(at("2023-08-28T00:00:00")) == at(
        "2023-08-28T00:00:00"
    ) + timedelta(minutes=5)


@pytest.mark.parametrize(
    "expression", ["cron(0 3 1 * * *)", "cron(0 3 1 *)", "every day", "cron(0 25 1 * ? *)", "rate(0 minutes)"]
)
def test_invalid_expressions_are_rejected(expression: str) -> None:
    with pytest.raises(ScheduleError):
        parse(expression)
