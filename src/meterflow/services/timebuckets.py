"""UTC time buckets for usage: HOUR, DAY, WEEK (starting Monday), MONTH. Pure."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta


class Grouping(enum.StrEnum):
    HOUR = "HOUR"
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"


def floor(moment: datetime, grouping: Grouping) -> datetime:
    moment = moment.astimezone(UTC)
    hour = moment.replace(minute=0, second=0, microsecond=0)
    if grouping is Grouping.HOUR:
        return hour
    day = hour.replace(hour=0)
    if grouping is Grouping.DAY:
        return day
    if grouping is Grouping.WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def following(start: datetime, grouping: Grouping) -> datetime:
    if grouping is Grouping.HOUR:
        return start + timedelta(hours=1)
    if grouping is Grouping.DAY:
        return start + timedelta(days=1)
    if grouping is Grouping.WEEK:
        return start + timedelta(weeks=1)
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def ceil_hour(moment: datetime) -> datetime:
    floored = floor(moment, Grouping.HOUR)
    return floored if floored == moment.astimezone(UTC) else floored + timedelta(hours=1)


STEPS = {
    Grouping.HOUR: timedelta(hours=1),
    Grouping.DAY: timedelta(days=1),
    Grouping.WEEK: timedelta(weeks=1),
}


def bucket_count(start: datetime, end: datetime, grouping: Grouping) -> int:
    """How many buckets cover [start, end), by arithmetic: nothing is built, so a limit can
    be checked before any work (a range of 0001-9999 by HOUR is 87 million buckets)."""
    first = floor(start, grouping)
    end = end.astimezone(UTC)
    if end <= first:
        return 0
    if grouping is Grouping.MONTH:
        months = (end.year - first.year) * 12 + end.month - first.month
        return months + (0 if floor(end, grouping) == end else 1)
    return -((first - end) // STEPS[grouping])  # ceiling division


def buckets(start: datetime, end: datetime, grouping: Grouping) -> list[datetime]:
    """Bucket starts covering [start, end)."""
    starts = []
    current = floor(start, grouping)
    while current < end:
        starts.append(current)
        current = following(current, grouping)
    return starts
