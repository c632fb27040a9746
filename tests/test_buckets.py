"""Report buckets in a time zone (buckets.py): DST days of 23 and 25 hours, the repeated
hour of a fall-back night, half-hour zones, weeks from Monday, months, the automatic
interval, labels, bad zones; and, for random spans and zones, buckets that tile the span."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pixel_server.buckets import (
    MAX_BUCKETS,
    auto_interval,
    boundaries,
    bucket_index,
    label,
    parse_zone,
)

H = 3_600_000
D = 24 * H


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def hours(bounds: list[int]) -> list[float]:
    return [(b - a) / H for a, b in itertools.pairwise(bounds)]


def test_berlin_days_across_both_dst_changes() -> None:
    spring = boundaries(
        ms("2026-03-28T00:00+01:00"), ms("2026-03-31T00:00+02:00"), "day", "Europe/Berlin"
    )
    assert hours(spring) == [24, 23, 24]  # 2026-03-29 loses an hour
    autumn = boundaries(
        ms("2026-10-24T00:00+02:00"), ms("2026-10-27T00:00+01:00"), "day", "Europe/Berlin"
    )
    assert hours(autumn) == [24, 25, 24]  # 2026-10-25 gains one
    assert label(autumn[1], "Europe/Berlin") == "2026-10-25T00:00:00+02:00"
    assert label(autumn[2], "Europe/Berlin") == "2026-10-26T00:00:00+01:00"


def test_the_repeated_hour_of_a_fall_back_night_is_two_buckets() -> None:
    start = ms("2026-11-01T00:00-04:00")  # America/New_York falls back at 02:00 EDT
    bounds = boundaries(start, start + 4 * H, "hour", "America/New_York")
    labels = [label(b, "America/New_York") for b in bounds[:-1]]
    assert labels == [
        "2026-11-01T00:00:00-04:00",
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]
    assert hours(bounds) == [1, 1, 1, 1]


def test_half_hour_zones_have_hours_and_days_at_half_past_utc() -> None:
    days = boundaries(ms("2026-11-10T00:00Z"), ms("2026-11-11T00:00Z"), "day", "Asia/Kolkata")
    assert days[0] == ms("2026-11-09T18:30Z")
    assert hours(days) == [24, 24]
    hourly = boundaries(ms("2026-11-10T00:10Z"), ms("2026-11-10T02:00Z"), "hour", "Asia/Kolkata")
    assert all(b % H == 30 * 60_000 for b in hourly)
    assert hourly[0] == ms("2026-11-09T23:30Z")
    # Lord Howe's DST (first Sunday of October) moves the clock by 30 minutes: 23.5 hours
    lh = boundaries(
        ms("2026-10-03T00:00+10:30"), ms("2026-10-05T00:00+11:00"), "day", "Australia/Lord_Howe"
    )
    assert hours(lh) == [24, 23.5]


def test_weeks_begin_on_monday_and_months_have_their_lengths() -> None:
    weeks = boundaries(ms("2026-11-04T12:00Z"), ms("2026-11-20T00:00Z"), "week", "UTC")
    assert [datetime.fromtimestamp(b / 1000, UTC).weekday() for b in weeks] == [0] * len(weeks)
    assert weeks[0] == ms("2026-11-02T00:00Z")
    months = boundaries(ms("2028-01-15T00:00Z"), ms("2028-04-01T00:00Z"), "month", "UTC")
    assert [(b - a) // D for a, b in itertools.pairwise(months)] == [31, 29, 31]


def test_a_midnight_that_does_not_exist_begins_the_day_after_the_gap() -> None:
    # Chile (America/Santiago) moved its clocks from 00:00 to 01:00 on 2026-09-06
    bounds = boundaries(
        ms("2026-09-05T12:00-04:00"), ms("2026-09-07T12:00-03:00"), "day", "America/Santiago"
    )
    assert label(bounds[1], "America/Santiago") == "2026-09-06T01:00:00-03:00"
    assert hours(bounds)[1] == 23


def test_bucket_index_and_the_automatic_interval() -> None:
    bounds = boundaries(0, 3 * D, "day", "UTC")
    assert [bucket_index(bounds, t) for t in (0, D - 1, D, 3 * D - 1)] == [0, 0, 1, 2]
    assert auto_interval(0, 2 * D) == "hour"
    assert auto_interval(0, 2 * D + 1) == "day"
    assert auto_interval(0, 90 * D) == "day"
    assert auto_interval(0, 300 * D) == "week"
    assert auto_interval(0, 400 * D) == "month"


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "../../etc/passwd", "/etc/localtime", "", "UTC\x00"]
)
def test_a_zone_that_is_not_one_is_a_clear_value_error(zone: str) -> None:
    with pytest.raises(ValueError, match="zone"):
        parse_zone(zone)


def test_too_many_buckets_is_refused() -> None:
    with pytest.raises(ValueError, match="buckets"):
        boundaries(0, (MAX_BUCKETS + 5) * H, "hour", "UTC")
    with pytest.raises(ValueError, match="buckets"):
        boundaries(0, (MAX_BUCKETS + 5) * D, "day", "UTC")


ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/Santiago",
)


@settings(max_examples=150, deadline=None)
@given(
    since=st.integers(ms("2020-01-01T00:00Z"), ms("2030-01-01T00:00Z")),
    length=st.integers(1, 40 * D),
    interval=st.sampled_from(("hour", "day", "week", "month")),
    zone=st.sampled_from(ZONES),
    probe=st.floats(0, 1),
)
def test_buckets_tile_the_span_and_start_where_the_local_clock_says(
    since: int, length: int, interval: str, zone: str, probe: float
) -> None:
    until = since + (length if interval != "hour" else min(length, 200 * H))
    bounds = boundaries(since, until, interval, zone)
    assert all(a < b for a, b in itertools.pairwise(bounds))
    assert bounds[0] <= since < bounds[1]
    assert bounds[-2] < until <= bounds[-1]
    ts = since + int(probe * (until - since - 1))
    index = bucket_index(bounds, ts)
    assert bounds[index] <= ts < bounds[index + 1]
    start = datetime.fromtimestamp(bounds[index] / 1000, ZoneInfo(zone))
    local = datetime.fromtimestamp(ts / 1000, ZoneInfo(zone))
    if interval == "hour":
        assert start.minute == 0
        assert 0 <= ts - bounds[index] < H
    else:
        assert start.date() <= local.date()
        if interval == "day":
            assert (start.date() == local.date()) or zone == "America/Santiago"
        if interval == "week":
            assert start.weekday() == 0 or start.hour != 0
        if interval == "month":
            assert start.day == 1
