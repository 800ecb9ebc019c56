"""EventBridge schedule expressions: cron(min hour day-of-month month day-of-week year) and rate(...).

Times are UTC, as EventBridge evaluates them. Day of week runs 1-7 from Sunday, as in AWS.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_MONTHS = {
    name: index
    for index, name in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1
    )
}
_DAYS = {name: index for index, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], start=1)}
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_SEARCH_DAYS = 366 * 8  # beyond this an expression never fires (e.g. a past year)


class ScheduleError(ValueError):
    """The expression is not one EventBridge accepts (or one this runtime cannot evaluate)."""


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int] | None  # None: '?'
    last_day: bool  # 'L' in day-of-month
    months: frozenset[int]
    weekdays: frozenset[int] | None  # None: '?'; AWS numbering, 1 = Sunday
    nth_weekday: tuple[int, int] | None  # '6#3': the third Friday
    years: frozenset[int] | None  # None: '*'

    def next_after(self, moment: datetime) -> datetime:
        start = (moment.astimezone(UTC) + timedelta(minutes=1)).replace(second=0, microsecond=0)
        day = start.date()
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day.year, day.month, day.day):
                first_minute = start.hour * 60 + start.minute if day == start.date() else 0
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        if hour * 60 + minute >= first_minute:
                            return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
            day += timedelta(days=1)
        raise ScheduleError("the expression never fires again")

    def _day_matches(self, year: int, month: int, day: int) -> bool:
        if self.years is not None and year not in self.years:
            return False
        if month not in self.months:
            return False
        last = calendar.monthrange(year, month)[1]
        if self.last_day:
            return day == last
        if self.days is not None:
            return day in self.days
        weekday = (calendar.weekday(year, month, day) + 1) % 7 + 1  # Python Monday=0 -> AWS Sunday=1
        if self.nth_weekday is not None:
            wanted, nth = self.nth_weekday
            return weekday == wanted and (day - 1) // 7 + 1 == nth
        return self.weekdays is None or weekday in self.weekdays


@dataclass(frozen=True)
class Rate:
    every: timedelta

    def next_after(self, moment: datetime) -> datetime:
        return moment.astimezone(UTC) + self.every


def parse(expression: str) -> Cron | Rate:
    expression = expression.strip()
    rate = _RATE.match(expression)
    if rate:
        amount, unit = int(rate.group(1)), rate.group(2).rstrip("s")
        if amount < 1:
            raise ScheduleError(f"{expression}: the rate must be positive")
        return Rate(timedelta(**{f"{unit}s": amount}))
    if not (expression.startswith("cron(") and expression.endswith(")")):
        raise ScheduleError(f"{expression}: expected cron(...) or rate(...)")
    fields = expression[5:-1].split()
    if len(fields) != 6:
        raise ScheduleError(f"{expression}: cron needs six fields")
    minutes, hours, days, months, weekdays, years = fields
    if (days == "?") == (weekdays == "?"):
        raise ScheduleError(f"{expression}: exactly one of day-of-month and day-of-week must be '?'")
    nth = None
    if "#" in weekdays:
        day_name, _, index = weekdays.partition("#")
        nth = (_value(day_name, _DAYS, 1, 7), int(index))
    return Cron(
        minutes=_field(minutes, 0, 59),
        hours=_field(hours, 0, 23),
        days=None if days in ("?", "L") else _field(days, 1, 31),
        last_day=days == "L",
        months=_field(months, 1, 12, _MONTHS),
        weekdays=None if weekdays == "?" or nth else _field(weekdays, 1, 7, _DAYS),
        nth_weekday=nth,
        years=None if years == "*" else _field(years, 1970, 2199),
    )


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part in ("*", ""):
            first, last = low, high
        elif "-" in part:
            first_text, last_text = part.split("-", 1)
            first, last = _value(first_text, names, low, high), _value(last_text, names, low, high)
        else:
            first = _value(part, names, low, high)
            last = high if step != 1 else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _value(text: str, names: dict[str, int] | None, low: int, high: int) -> int:
    if names and text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise ScheduleError(f"{text!r} is not supported here (W and L forms other than 'L' are not)")
    value = int(text)
    if not low <= value <= high:
        raise ScheduleError(f"{value} is outside {low}-{high}")
    return value
