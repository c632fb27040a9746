"""Time buckets of a report in its time zone: stored times are UTC epoch milliseconds; a
report's hours, days, weeks (Monday first, ISO 8601) and months are the zone's, DST
included (zoneinfo, with the tzdata package where the system has no zone database).

* a day is 23 hours on a spring-forward day and 25 on a fall-back day;
* an hour bucket is a local hour: across a fall-back change the repeated local hour gives
  two buckets (two distinct UTC hours); in a zone with a half-hour offset (Asia/Kolkata) the
  hours begin at :30 UTC;
* a local midnight that does not exist (a zone whose clocks jump at midnight, as Chile's
  do) begins its day at the first instant that exists after it.
"""

from __future__ import annotations

import bisect
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

INTERVALS = ("hour", "day", "week", "month")
MAX_BUCKETS = 10_000
DAY_MS = 86_400_000
QUARTER_MS = 900_000  # every zone's offset is a whole number of quarter hours
MAX_ZONE_CHARS = 64
# the automatic interval: the finest whose buckets for the span stay readable (Plausible's)
AUTO = ((2 * DAY_MS, "hour"), (90 * DAY_MS, "day"), (366 * DAY_MS, "week"))


def parse_zone(text: str) -> str:
    """``text`` if it names a time zone this machine knows; ValueError (one line) if not."""
    if not text or len(text) > MAX_ZONE_CHARS or not text.isprintable():
        raise ValueError(f"not a time zone: {text[:MAX_ZONE_CHARS]!r}")
    try:
        ZoneInfo(text)
    except Exception:  # ZoneInfoNotFoundError, ValueError for paths, OSError, ...
        raise ValueError(
            f"unknown time zone {text!r}: an IANA name such as Europe/Berlin, or UTC"
        ) from None
    return text


def auto_interval(since_ms: int, until_ms: int) -> str:
    """Hours up to 2 days, days up to 90, weeks up to a year, then months."""
    span = until_ms - since_ms
    for longest, interval in AUTO:
        if span <= longest:
            return interval
    return "month"


def boundaries(since_ms: int, until_ms: int, interval: str, zone: str) -> list[int]:
    """The UTC ms starts of the buckets that overlap ``[since_ms, until_ms)``, in order, the
    first the start of the bucket holding ``since_ms``, then the end of the last: bucket
    ``i`` is ``[b[i], b[i + 1])``. ValueError past MAX_BUCKETS."""
    if interval not in INTERVALS:
        raise ValueError(f"interval is one of {', '.join(INTERVALS)}")
    until_ms = max(until_ms, since_ms + 1)
    tz = ZoneInfo(zone)
    if interval == "hour":
        return _hours(since_ms, until_ms, tz)
    local = datetime.fromtimestamp(since_ms / 1000, tz).replace(tzinfo=None)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "week":
        day -= timedelta(days=day.weekday())
    elif interval == "month":
        day = day.replace(day=1)
    out = [_instant(day, tz)]
    while out[-1] < until_ms:
        if len(out) > MAX_BUCKETS:
            raise _too_many(interval)
        day = _next(day, interval)
        out.append(_instant(day, tz))
    return out


def _hours(since_ms: int, until_ms: int, tz: ZoneInfo) -> list[int]:
    """Local hours: the quarter hours at which the zone's clock reads minute 0."""
    if (until_ms - since_ms) // 3_600_000 > MAX_BUCKETS:
        raise _too_many("hour")
    out: list[int] = []
    t = since_ms - since_ms % QUARTER_MS
    while True:
        if datetime.fromtimestamp(t / 1000, tz).minute == 0:
            if t > since_ms and not out:  # since_ms lies in the hour that began before
                out.append(_hour_start(since_ms, tz))
            out.append(t)
            if t >= until_ms:
                return out
        t += QUARTER_MS


def _hour_start(ts_ms: int, tz: ZoneInfo) -> int:
    t = ts_ms - ts_ms % QUARTER_MS
    while datetime.fromtimestamp(t / 1000, tz).minute != 0:
        t -= QUARTER_MS
    return t


def _instant(local: datetime, tz: ZoneInfo) -> int:
    """The UTC ms of a local wall time; one that does not exist (a gap) is read with the
    offset before the change, which lands on the first instant after the gap."""
    return int(local.replace(tzinfo=tz).astimezone(UTC).timestamp() * 1000)


def _next(local: datetime, interval: str) -> datetime:
    if interval == "day":
        return local + timedelta(days=1)
    if interval == "week":
        return local + timedelta(days=7)
    month = local.month % 12 + 1
    return local.replace(year=local.year + (local.month == 12), month=month)


def _too_many(interval: str) -> ValueError:
    return ValueError(
        f"more than {MAX_BUCKETS:,} {interval} buckets: choose a larger interval or a shorter span"
    )


def bucket_index(bounds: list[int], ts_ms: int) -> int:
    """The bucket of ``ts_ms`` (``bounds`` from :func:`boundaries`)."""
    return bisect.bisect_right(bounds, ts_ms) - 1


def label(start_ms: int, zone: str) -> str:
    """A bucket's start as local ISO 8601 with its offset: ``2026-03-29T00:00:00+01:00``."""
    return datetime.fromtimestamp(start_ms / 1000, ZoneInfo(zone)).isoformat(timespec="seconds")
