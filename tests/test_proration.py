"""Exact proration against a Fraction reference, and services refusing naive times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterflow.errors import ValidationError
from meterflow.models import PeriodInterval
from meterflow.pricing import invoice as inv
from meterflow.services.periods import covered_share, period_at
from meterflow.services.validation import utc_time

D = Decimal


def half_up(amount: Fraction, places: int) -> Fraction:
    """The reference rounding: half away from zero, on an exact rational."""
    scaled = abs(amount) * 10**places
    whole = int(scaled)
    if scaled - whole >= Fraction(1, 2):
        whole += 1
    return Fraction(whole if amount >= 0 else -whole, 10**places)


# Proration ----------------------------------------------------------------------------------


def test_a_50000_fee_from_jan_10_1337_prorates_to_the_cent() -> None:
    start = datetime(2026, 1, 10, 13, 37, tzinfo=UTC)
    period = period_at(start, PeriodInterval.MONTH, 1, start)
    assert (period.start, period.end) == (
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 2, 1, tzinfo=UTC),
    )
    # By hand: 21 days 10 h 23 min of January's 31 days = 30,863 of 44,640 minutes.
    assert covered_share(period, start) == Fraction(30_863, 44_640)
    terms = inv.Terms("USD", (), fees=(inv.Fee("platform", D("50000"), prorated=True),))
    amounts = inv.price(terms, {}, inv.PeriodFacts(0, covered_share(period, start)))
    assert amounts.lines[0].amount == D("34568.77")  # 34,568.7724…; a 6-place share gave .75


@given(
    interval=st.sampled_from(list(PeriodInterval)),
    count=st.integers(1, 3),
    anchor=st.datetimes(datetime(2001, 1, 1), datetime(2090, 1, 1), timezones=st.just(UTC)),
    cents=st.integers(0, 10**12),
    currency=st.sampled_from(["USD", "JPY", "KWD"]),
)
def test_prorated_fees_equal_a_fraction_reference(
    interval: PeriodInterval, count: int, anchor: datetime, cents: int, currency: str
) -> None:
    places = {"USD": 2, "JPY": 0, "KWD": 3}[currency]
    fee = D(cents).scaleb(-places)
    period = period_at(anchor, interval, count, anchor)
    whole = Fraction(int((period.end - period.start) / timedelta(microseconds=1)))
    left = Fraction(int((period.end - max(anchor, period.start)) / timedelta(microseconds=1)))
    expected = half_up(Fraction(fee) * left / whole, places)
    terms = inv.Terms(currency, (), fees=(inv.Fee("fee", fee, prorated=True),))
    amounts = inv.price(terms, {}, inv.PeriodFacts(0, covered_share(period, anchor)))
    assert Fraction(amounts.lines[0].amount) == expected
    assert -amounts.lines[0].amount.as_tuple().exponent == places  # type: ignore[operator]


def test_services_refuse_a_naive_time_too() -> None:
    with pytest.raises(ValidationError, match="offset"):
        utc_time(datetime(2026, 1, 10, 13, 37), field="startTime")
    assert utc_time(
        datetime.fromisoformat("2026-01-10T14:37:00+01:00"), field="startTime"
    ) == datetime(2026, 1, 10, 13, 37, tzinfo=UTC)
