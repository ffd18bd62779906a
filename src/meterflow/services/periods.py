"""Billing periods: DAY, WEEK (from Monday), MONTH, YEAR times count, anchored on the start of the
interval the assignment begins in (UTC). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from meterflow.models import PeriodInterval


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime
    index: int  # 0 = the period the assignment starts in


def floor_interval(moment: datetime, interval: PeriodInterval) -> datetime:
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if interval is PeriodInterval.DAY:
        return day
    if interval is PeriodInterval.WEEK:
        return day - timedelta(days=day.weekday())
    if interval is PeriodInterval.MONTH:
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def shift(start: datetime, interval: PeriodInterval, steps: int) -> datetime:
    if interval is PeriodInterval.DAY:
        return start + timedelta(days=steps)
    if interval is PeriodInterval.WEEK:
        return start + timedelta(weeks=steps)
    months = steps * (12 if interval is PeriodInterval.YEAR else 1)
    total = start.year * 12 + (start.month - 1) + months
    return start.replace(year=total // 12, month=total % 12 + 1)


def period_at(
    anchor_time: datetime, interval: PeriodInterval, count: int, moment: datetime
) -> Period:
    """The billing period containing `moment` for an assignment that began at `anchor_time`."""
    anchor = floor_interval(anchor_time, interval)
    # Estimate the index, then correct: months have uneven lengths.
    approx = {
        PeriodInterval.DAY: 1,
        PeriodInterval.WEEK: 7,
        PeriodInterval.MONTH: 30,
        PeriodInterval.YEAR: 365,
    }[interval] * count
    index = max(0, int((moment - anchor).days // approx))
    while index > 0 and shift(anchor, interval, index * count) > moment:
        index -= 1
    while shift(anchor, interval, (index + 1) * count) <= moment:
        index += 1
    return Period(
        shift(anchor, interval, index * count), shift(anchor, interval, (index + 1) * count), index
    )


def _microseconds(span: timedelta) -> int:
    return (span.days * 86_400 + span.seconds) * 1_000_000 + span.microseconds


def covered_share(period: Period, assignment_start: datetime) -> Fraction:
    """The share of a period an assignment covers (for prorating its first period's fees),
    exact: whole microseconds over whole microseconds. The fee is rounded once, at its line
    (a share cut to 6 places, or float seconds, can move a $50,000 fee by cents)."""
    begin = min(max(period.start, assignment_start), period.end)
    return Fraction(_microseconds(period.end - begin), _microseconds(period.end - period.start))
