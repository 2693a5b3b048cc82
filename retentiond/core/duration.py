"""ISO 8601 durations with calendar-correct addition.

A ``Duration`` has a calendar part (years, months, days) and an exact part (hours,
minutes, seconds). ``add_to`` adds the calendar part on the calendar of the datetime's
own time zone (months and years together, clamping the day to the end of the month,
then days), then the exact part as elapsed seconds. Pass UTC datetimes (house rule) and
days are exactly 86 400 s.

Accepted syntax (upper-case designators, non-negative integers only)::

    PnYnMnDTnHnMnS   any subset in this order, e.g. P6M, P1Y, P5Y, P30D, PT30S,
                     P1Y2M10DT2H30M; at least one component; a T needs a time component
    PnW              weeks alone (ISO 8601-1 / RFC 3339): read as 7n days

Rejected: negative values, fractions (P0.5Y, PT1,5S), empty ``P``, ``PT``, lower case,
whitespace, anything else. Each number has at most 18 digits.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

__all__ = [
    "RETENTION_MAX",
    "RETENTION_MIN",
    "Duration",
    "check_retention_bounds",
    "never_exceeds",
    "parse_duration",
]

# Average Gregorian lengths (400-year cycle: 146 097 days), used only by approx_seconds.
_SECONDS_PER_YEAR = 31_556_952  # 365.2425 days
_SECONDS_PER_MONTH = 2_629_746  # 1/12 of that: 30.436875 days
_SECONDS_PER_DAY = 86_400
_MAX_DIGITS = 18

_DURATION_RE = re.compile(
    r"P(?:(?P<years>[0-9]+)Y)?(?:(?P<months>[0-9]+)M)?(?:(?P<days>[0-9]+)D)?"
    r"(?P<t>T(?:(?P<hours>[0-9]+)H)?(?:(?P<minutes>[0-9]+)M)?(?:(?P<seconds>[0-9]+)S)?)?"
)
_WEEKS_RE = re.compile(r"P(?P<weeks>[0-9]+)W")
_SIGN_RE = re.compile(r"^[-+]|[PYMWDTH][-+][0-9]")
_FRACTION_RE = re.compile(r"[0-9][.,][0-9]")
_EXAMPLES = "e.g. P6M, P1Y, P30D, PT30S, P1Y2M10DT2H30M"


@dataclass(frozen=True, kw_only=True)
class Duration:
    """A non-negative ISO 8601 duration. Fields keep what was written; see ``normalized``."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0

    def __post_init__(self) -> None:
        for name in _FIELD_NAMES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Duration.{name} must be an int, got {type(value).__name__}")
            if value < 0:
                raise ValueError(f"Duration.{name} must not be negative, got {value}")

    @property
    def total_months(self) -> int:
        """Years and months as one count of months (P1Y2M -> 14)."""
        return self.years * 12 + self.months

    @property
    def time_seconds(self) -> int:
        """The exact part (hours, minutes, seconds) in seconds."""
        return self.hours * 3600 + self.minutes * 60 + self.seconds

    def normalized(self) -> Duration:
        """Same meaning, carried: months < 12, minutes < 60, seconds < 60 (hours unbounded).

        Days are never folded into months, nor hours into days: they are not fixed lengths.
        """
        years, months = divmod(self.total_months, 12)
        minutes_total, seconds = divmod(self.time_seconds, 60)
        hours, minutes = divmod(minutes_total, 60)
        return Duration(
            years=years, months=months, days=self.days, hours=hours, minutes=minutes,
            seconds=seconds,
        )

    def iso(self) -> str:
        """Normalised ISO 8601 text: P14M -> P1Y2M, PT90M -> PT1H30M, P2W -> P14D, zero -> PT0S."""
        return _iso_text(self)

    def _iso(self) -> str:
        n = self.normalized()
        date_part = "".join(
            f"{v}{d}" for v, d in ((n.years, "Y"), (n.months, "M"), (n.days, "D")) if v
        )
        time_part = "".join(
            f"{v}{d}" for v, d in ((n.hours, "H"), (n.minutes, "M"), (n.seconds, "S")) if v
        )
        if not date_part and not time_part:
            return "PT0S"
        return "P" + date_part + ("T" + time_part if time_part else "")

    def __str__(self) -> str:
        return self.iso()

    def approx_seconds(self) -> int:
        """Length with average years (365.2425 days) and months (30.436875 days); for bounds."""
        return (
            self.years * _SECONDS_PER_YEAR
            + self.months * _SECONDS_PER_MONTH
            + self.days * _SECONDS_PER_DAY
            + self.time_seconds
        )

    def add_to(self, dt: datetime) -> datetime:
        """``dt`` + this duration, calendar-correct (2026-01-31 + P1M = 2026-02-28).

        Raises ValueError for a naive ``dt`` or a result outside the datetime range.
        The result has ``dt``'s tzinfo.
        """
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise ValueError("naive datetime: an aware datetime (with UTC offset) is required")
        tz = dt.tzinfo
        try:
            month_index = dt.month - 1 + self.total_months
            year = dt.year + month_index // 12
            month = month_index % 12 + 1
            day = min(dt.day, calendar.monthrange(year, month)[1])
            wall = dt.replace(year=year, month=month, day=day) + timedelta(days=self.days)
            exact = wall.astimezone(UTC) + timedelta(seconds=self.time_seconds)
            return exact.astimezone(tz)
        except (OverflowError, ValueError) as e:
            raise ValueError(
                f"{dt.isoformat()} + {self.iso()} is outside the supported date range"
            ) from e


_FIELD_NAMES = tuple(f.name for f in fields(Duration))


@lru_cache(maxsize=1024)
def _iso_text(duration: Duration) -> str:
    """``Duration.iso``, computed once per distinct duration: a policy has a handful, and
    every decision (plan, sweep, ``ls``) names them in its explanation."""
    return duration._iso()


def parse_duration(text: str) -> Duration:
    """Parse an ISO 8601 duration (see module docstring). Raises ValueError saying why."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not an ISO 8601 duration: expected a string")
    shown = repr(text)
    if _SIGN_RE.search(text):
        raise ValueError(f"{shown} is not an ISO 8601 duration: signs are not allowed "
                         "(durations are never negative)")
    if _FRACTION_RE.search(text):
        raise ValueError(f"{shown} is not an ISO 8601 duration: fractions are not allowed, "
                         "use a smaller unit (P6M, not P0.5Y)")
    weeks = _WEEKS_RE.fullmatch(text)
    if weeks is not None:
        return Duration(days=7 * _number(weeks["weeks"], shown))
    m = _DURATION_RE.fullmatch(text)
    if m is None:
        hint = ""
        if not text:
            hint = ": empty"
        elif text.upper() != text:
            hint = ": designators must be upper case"
        elif text != text.strip():
            hint = ": remove the surrounding spaces"
        elif "W" in text:
            hint = ": weeks cannot be combined with other units, use days"
        raise ValueError(f"{shown} is not an ISO 8601 duration{hint} ({_EXAMPLES})")
    if m["t"] is not None and m["hours"] is None and m["minutes"] is None \
            and m["seconds"] is None:
        raise ValueError(f"{shown} is not an ISO 8601 duration: "
                         "T must be followed by hours, minutes or seconds")
    names = ("years", "months", "days", "hours", "minutes", "seconds")
    if all(m[n] is None for n in names):
        raise ValueError(f"{shown} is not an ISO 8601 duration: no component ({_EXAMPLES})")
    values = {n: _number(m[n], shown) for n in names if m[n] is not None}
    return Duration(**values)


def _number(digits: str, shown: str) -> int:
    if len(digits) > _MAX_DIGITS:
        raise ValueError(f"{shown} is not a usable duration: "
                         f"numbers have at most {_MAX_DIGITS} digits")
    return int(digits)


RETENTION_MIN = Duration(seconds=30)
RETENTION_MAX = Duration(years=99)


def check_retention_bounds(d: Duration) -> None:
    """Raise ValueError unless PT30S <= d <= P99Y (compared with ``approx_seconds``)."""
    if not RETENTION_MIN.approx_seconds() <= d.approx_seconds() <= RETENTION_MAX.approx_seconds():
        raise ValueError(
            f"{d.iso()} is out of bounds ({RETENTION_MIN.iso()} .. {RETENTION_MAX.iso()})"
        )


def never_exceeds(shorter: Duration, longer: Duration) -> bool:
    """True if ``shorter.add_to(t) <= longer.add_to(t)`` for every UTC start ``t``.

    Exact: month arithmetic repeats every 400 Gregorian years, so the worst start date is
    found by checking one cycle (4 800 months x 4 days of the month; cached).
    """
    m1, m2 = shorter.total_months, longer.total_months
    e1 = shorter.days * _SECONDS_PER_DAY + shorter.time_seconds
    e2 = longer.days * _SECONDS_PER_DAY + longer.time_seconds
    if m1 <= m2 and e1 <= e2:
        return True
    if m1 == m2:
        return False
    return _max_day_gap(m1, m2) * _SECONDS_PER_DAY + e1 - e2 <= 0


_CYCLE_MONTHS = 4800  # 400 Gregorian years: after that, every month length repeats


@lru_cache(maxsize=1)
def _month_table(months: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Ordinal of the 1st and length of each month from January 2000, ``months`` of them."""
    firsts: list[int] = []
    lengths: list[int] = []
    for i in range(months):
        year, month = 2000 + i // 12, i % 12 + 1
        firsts.append(date(year, month, 1).toordinal())
        lengths.append(calendar.monthrange(year, month)[1])
    return tuple(firsts), tuple(lengths)


@lru_cache(maxsize=256)
def _max_day_gap(m1: int, m2: int) -> int:
    """Max over start dates of days(start + m1 months) - days(start + m2 months)."""
    span = max(m1, m2)
    if span > (9999 - 2000) * 12 - _CYCLE_MONTHS:
        raise ValueError("duration too long to compare")
    table_size = _CYCLE_MONTHS + span + 1
    firsts, lengths = _month_table(max(table_size, 12 * 520))  # one table covers P99Y
    worst = -(10**9)
    for i in range(_CYCLE_MONTHS):
        a, b = i + m1, i + m2
        # Days 1..28 never clamp, so they all give the same gap as day 1.
        for day in (1, 29, 30, 31):
            if day > lengths[i]:
                break
            gap = (firsts[a] + min(day, lengths[a])) - (firsts[b] + min(day, lengths[b]))
            worst = max(worst, gap)
    return worst
