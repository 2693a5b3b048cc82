"""ISO 8601 durations: parsing, normalisation, calendar-correct addition, bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retentiond.core.duration import (
    RETENTION_MAX,
    RETENTION_MIN,
    Duration,
    check_retention_bounds,
    never_exceeds,
    parse_duration,
)

PARIS = ZoneInfo("Europe/Paris")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected", "iso"),
    [
        pytest.param("P6M", Duration(months=6), "P6M", id="six-months"),
        pytest.param("P1Y", Duration(years=1), "P1Y", id="one-year"),
        pytest.param("P5Y", Duration(years=5), "P5Y", id="five-years"),
        pytest.param("P30D", Duration(days=30), "P30D", id="thirty-days"),
        pytest.param("PT30S", Duration(seconds=30), "PT30S", id="thirty-seconds"),
        pytest.param(
            "P1Y2M10DT2H30M",
            Duration(years=1, months=2, days=10, hours=2, minutes=30),
            "P1Y2M10DT2H30M",
            id="all-components",
        ),
        pytest.param("P1Y10D", Duration(years=1, days=10), "P1Y10D", id="skipped-month"),
        pytest.param("PT2H", Duration(hours=2), "PT2H", id="hours-only"),
        pytest.param("P2W", Duration(days=14), "P14D", id="weeks-as-days"),
        pytest.param("P14M", Duration(months=14), "P1Y2M", id="months-carried"),
        pytest.param("P12M", Duration(months=12), "P1Y", id="twelve-months-is-a-year"),
        pytest.param("PT90M", Duration(minutes=90), "PT1H30M", id="minutes-carried"),
        pytest.param("PT3600S", Duration(seconds=3600), "PT1H", id="seconds-carried"),
        pytest.param("PT36H", Duration(hours=36), "PT36H", id="hours-not-folded-to-days"),
        pytest.param("P45D", Duration(days=45), "P45D", id="days-not-folded-to-months"),
        pytest.param("P0D", Duration(), "PT0S", id="zero"),
        pytest.param("P06M", Duration(months=6), "P6M", id="leading-zero"),
    ],
)
def test_parse_valid(text: str, expected: Duration, iso: str) -> None:
    d = parse_duration(text)
    assert d == expected
    assert d.iso() == iso
    assert str(d) == iso


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("P6X", "'P6X' is not an ISO 8601 duration (e.g.", id="unknown-designator"),
        pytest.param("", "empty", id="empty-string"),
        pytest.param("P", "no component", id="empty-P"),
        pytest.param("PT", "T must be followed", id="empty-PT"),
        pytest.param("P1DT", "T must be followed", id="trailing-T"),
        pytest.param("-P1D", "signs are not allowed", id="negative-prefix"),
        pytest.param("P-1D", "signs are not allowed", id="negative-component"),
        pytest.param("+P1D", "signs are not allowed", id="plus-sign"),
        pytest.param("P0.5Y", "fractions are not allowed", id="fraction-dot"),
        pytest.param("PT1,5S", "fractions are not allowed", id="fraction-comma"),
        pytest.param("p6m", "upper case", id="lower-case"),
        pytest.param(" P6M", "surrounding spaces", id="leading-space"),
        pytest.param("P6M\n", "surrounding spaces", id="trailing-newline"),
        pytest.param("P1W2D", "weeks cannot be combined", id="weeks-combined"),
        pytest.param("P1M1Y", "not an ISO 8601 duration", id="wrong-order"),
        pytest.param("6M", "not an ISO 8601 duration", id="no-P"),
        pytest.param("P6", "not an ISO 8601 duration", id="no-designator"),
        pytest.param("PT6D", "not an ISO 8601 duration", id="days-after-T"),
        pytest.param("P\u0663D", "not an ISO 8601 duration", id="non-ascii-digit"),
        pytest.param("2026-01-01", "not an ISO 8601 duration", id="a-date"),
        pytest.param("P" + "9" * 19 + "D", "at most 18 digits", id="huge-number"),
    ],
)
def test_parse_invalid(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert fragment in str(info.value)


def test_parse_rejects_non_string() -> None:
    with pytest.raises(ValueError, match="expected a string"):
        parse_duration(6)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"days": -1}, id="negative"),
        pytest.param({"months": True}, id="bool"),
        pytest.param({"years": 1.5}, id="float"),
    ],
)
def test_constructor_rejects_bad_fields(kwargs: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        Duration(**kwargs)  # type: ignore[arg-type]


def test_duration_is_frozen() -> None:
    d = Duration(days=1)
    with pytest.raises(AttributeError):
        d.days = 2  # type: ignore[misc]


# ----------------------------------------------------------------------------- add_to


@pytest.mark.parametrize(
    ("start", "text", "expected"),
    [
        pytest.param(utc(2026, 1, 31), "P1M", utc(2026, 2, 28), id="jan31-plus-1M-clamps"),
        pytest.param(utc(2024, 1, 31), "P1M", utc(2024, 2, 29), id="jan31-plus-1M-leap"),
        pytest.param(utc(2026, 3, 31), "P1M", utc(2026, 4, 30), id="mar31-plus-1M"),
        pytest.param(utc(2025, 12, 31), "P2M", utc(2026, 2, 28), id="year-wrap-clamps"),
        pytest.param(utc(2026, 1, 31), "P2M", utc(2026, 3, 31), id="no-clamp-needed"),
        pytest.param(utc(2024, 2, 29), "P1Y", utc(2025, 2, 28), id="leap-day-plus-1Y"),
        pytest.param(utc(2024, 2, 29), "P4Y", utc(2028, 2, 29), id="leap-day-plus-4Y"),
        pytest.param(utc(2024, 2, 29), "P12M", utc(2025, 2, 28), id="leap-day-plus-12M"),
        pytest.param(utc(2096, 2, 29), "P4Y", utc(2100, 2, 28), id="2100-not-leap"),
        pytest.param(utc(1996, 2, 29), "P4Y", utc(2000, 2, 29), id="2000-is-leap"),
        pytest.param(utc(2024, 2, 29), "P1Y1M", utc(2025, 3, 29), id="years-months-one-clamp"),
        pytest.param(utc(2026, 1, 31), "P1M1D", utc(2026, 3, 1), id="months-then-days"),
        pytest.param(utc(2024, 2, 28), "P1D", utc(2024, 2, 29), id="day-onto-leap-day"),
        pytest.param(utc(2026, 1, 1), "P6M", utc(2026, 7, 1), id="six-months"),
        pytest.param(utc(2026, 1, 1), "P5Y", utc(2031, 1, 1), id="five-years"),
        pytest.param(
            utc(2026, 1, 1), "PT30S", datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC),
            id="thirty-seconds",
        ),
        pytest.param(
            utc(2026, 12, 31, 23, 0), "PT2H", utc(2027, 1, 1, 1, 0), id="time-crosses-year"
        ),
        pytest.param(
            utc(2024, 1, 31, 12), "P1Y2M10DT2H30M", utc(2025, 4, 10, 14, 30), id="everything"
        ),
        pytest.param(
            datetime(2026, 1, 1, 1, 2, 3, 456789, tzinfo=UTC), "P1D",
            datetime(2026, 1, 2, 1, 2, 3, 456789, tzinfo=UTC), id="keeps-microseconds",
        ),
    ],
)
def test_add_to(start: datetime, text: str, expected: datetime) -> None:
    result = parse_duration(text).add_to(start)
    assert result == expected
    assert result.tzinfo is start.tzinfo


def test_add_to_keeps_fixed_offset() -> None:
    plus2 = timezone(timedelta(hours=2))
    start = datetime(2026, 1, 31, 23, 30, tzinfo=plus2)  # 21:30Z: still Jan 31 in UTC too
    result = Duration(months=1).add_to(start)
    assert result == datetime(2026, 2, 28, 23, 30, tzinfo=plus2)
    assert result.utcoffset() == timedelta(hours=2)


def test_add_to_calendar_days_follow_wall_clock_time_is_exact() -> None:
    # Paris switches to summer time on 2026-03-29: that day has 23 hours.
    start = datetime(2026, 3, 28, 12, 0, tzinfo=PARIS)
    assert Duration(days=1).add_to(start) == datetime(2026, 3, 29, 12, 0, tzinfo=PARIS)
    assert Duration(hours=24).add_to(start) == datetime(2026, 3, 29, 13, 0, tzinfo=PARIS)


def test_add_to_normalises_nonexistent_wall_time() -> None:
    # 2026-03-28 02:30 Paris + P1D lands in the 02:00-03:00 gap; the result is a real time.
    start = datetime(2026, 3, 28, 2, 30, tzinfo=PARIS)
    result = Duration(days=1).add_to(start)
    assert result.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert result.astimezone(UTC).astimezone(PARIS) == result


def test_add_to_rejects_naive() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        Duration(days=1).add_to(datetime(2026, 1, 1))


def test_add_to_out_of_range() -> None:
    with pytest.raises(ValueError, match="outside the supported date range"):
        Duration(years=99).add_to(utc(9950, 1, 1))


# ----------------------------------------------------------------------------- bounds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("PT30S", 30, id="seconds"),
        pytest.param("P1D", 86_400, id="day"),
        pytest.param("P1M", 2_629_746, id="month-average"),
        pytest.param("P1Y", 31_556_952, id="year-average"),
        pytest.param("P12M", 31_556_952, id="twelve-months"),
    ],
)
def test_approx_seconds(text: str, seconds: int) -> None:
    assert parse_duration(text).approx_seconds() == seconds


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("PT30S", id="lower-bound"),
        pytest.param("PT1M", id="one-minute"),
        pytest.param("P99Y", id="upper-bound"),
        pytest.param("P1188M", id="upper-bound-in-months"),
        pytest.param("P98Y12M", id="upper-bound-mixed"),
    ],
)
def test_bounds_accept(text: str) -> None:
    check_retention_bounds(parse_duration(text))


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("P0D", id="zero"),
        pytest.param("PT29S", id="below-lower"),
        pytest.param("P99YT1S", id="just-above-upper"),
        pytest.param("P100Y", id="century"),
        pytest.param("P36500D", id="century-in-days"),
    ],
)
def test_bounds_reject(text: str) -> None:
    with pytest.raises(ValueError, match=r"is out of bounds \(PT30S \.\. P99Y\)"):
        check_retention_bounds(parse_duration(text))


def test_bound_constants() -> None:
    assert RETENTION_MIN.iso() == "PT30S"
    assert RETENTION_MAX.iso() == "P99Y"


@pytest.mark.parametrize(
    ("shorter", "longer", "expected"),
    [
        pytest.param("P5Y", "P5Y", True, id="equal"),
        pytest.param("P6M", "P1Y", True, id="months-fewer"),
        pytest.param("P12M", "P1Y", True, id="same-months-spelled-differently"),
        pytest.param("P1Y", "P6M", False, id="months-more"),
        pytest.param("P28D", "P1M", True, id="28-days-fit-every-month"),
        pytest.param("P29D", "P1M", False, id="29-days-exceed-february"),
        pytest.param("P1M", "P31D", True, id="month-fits-31-days"),
        pytest.param("P1M", "P30D", False, id="month-can-have-31-days"),
        pytest.param("P1Y", "P366D", True, id="year-fits-366-days"),
        pytest.param("P1Y", "P365D", False, id="year-can-have-366-days"),
        pytest.param("PT24H", "P1D", True, id="day-is-24h-in-utc"),
        pytest.param("P1DT1S", "P1D", False, id="one-second-more"),
        pytest.param("P1M", "P1MT1S", True, id="one-second-less"),
        pytest.param("P2M", "P1M31D", True, id="two-months-vs-month-and-31-days"),
    ],
)
def test_never_exceeds(shorter: str, longer: str, expected: bool) -> None:
    assert never_exceeds(parse_duration(shorter), parse_duration(longer)) is expected


# ----------------------------------------------------------------------------- properties

durations = st.builds(
    Duration,
    years=st.integers(0, 40),
    months=st.integers(0, 30),
    days=st.integers(0, 400),
    hours=st.integers(0, 50),
    minutes=st.integers(0, 100),
    seconds=st.integers(0, 100),
)
starts = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2300, 12, 31),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30)), PARIS]),
)


def _plus(a: Duration, b: Duration) -> Duration:
    return Duration(
        years=a.years + b.years, months=a.months + b.months, days=a.days + b.days,
        hours=a.hours + b.hours, minutes=a.minutes + b.minutes, seconds=a.seconds + b.seconds,
    )


@settings(max_examples=300)
@given(start=starts, d=durations, extra=durations)
def test_add_to_is_monotonic_in_the_duration(start: datetime, d: Duration, extra: Duration) -> None:
    shorter, longer = d.add_to(start), _plus(d, extra).add_to(start)
    assert shorter.astimezone(UTC) <= longer.astimezone(UTC)


@settings(max_examples=300)
@given(start=starts, d=durations)
def test_add_to_never_earlier_than_start(start: datetime, d: Duration) -> None:
    assert d.add_to(start).astimezone(UTC) >= start.astimezone(UTC)


@given(d=durations)
def test_iso_round_trips(d: Duration) -> None:
    parsed = parse_duration(d.iso())
    assert parsed == d.normalized()
    assert parsed.iso() == d.iso()


@given(start=starts, d=durations)
def test_normalized_means_the_same(start: datetime, d: Duration) -> None:
    assert d.normalized().add_to(start) == d.add_to(start)


@settings(max_examples=100)
@given(
    start=st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2300, 12, 31),
        timezones=st.just(UTC),
    ),
    a=durations,
    b=durations,
)
def test_never_exceeds_holds_for_sampled_starts(start: datetime, a: Duration, b: Duration) -> None:
    if never_exceeds(a, b):
        assert a.add_to(start) <= b.add_to(start)
    if a.add_to(start) > b.add_to(start):
        assert not never_exceeds(a, b)
