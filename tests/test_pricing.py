"""The rating engine: worked examples by hand, and properties over random models and usage."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterflow.errors import ValidationError
from meterflow.pricing import invoice as inv
from meterflow.pricing.models import (
    ByDimension,
    Graduated,
    Package,
    PerUnit,
    Tier,
    Volume,
    parse_price_model,
    to_json,
)
from meterflow.pricing.money import exponent, places, round_money, written
from meterflow.pricing.rating import DimensionUsage, rate, rate_by_dimension

D = Decimal


def test_amberflo_api_monetization_example() -> None:
    """$5 per 1,000 calls after 5,000 free calls: the 5,001st call is the first billed."""
    model = parse_price_model({"type": "package", "packageSize": 1000, "packagePrice": "5.00"})
    assert rate(model, D(5000), included=D(5000)).amount == 0
    assert rate(model, D(5001), included=D(5000)).amount == 5  # a started block is billed
    assert rate(model, D(6000), included=D(5000)).amount == 5
    assert rate(model, D(6001), included=D(5000)).amount == 10
    assert rate(model, D(12_345), included=D(5000)).amount == 40  # 7,345 → 8 blocks
    partial = parse_price_model(
        {"type": "package", "packageSize": 1000, "packagePrice": "5.00", "allowPartial": True}
    )
    assert rate(partial, D(5500), included=D(5000)).amount == D("2.5")


def test_graduated_and_volume_by_hand() -> None:
    tiers = [
        {"upTo": 1000, "unitPrice": "0.01"},
        {"upTo": 5000, "unitPrice": "0.008", "flatFee": "2"},
        {"upTo": None, "unitPrice": "0.005"},
    ]
    graduated = parse_price_model({"type": "graduated", "tiers": tiers})
    volume = parse_price_model({"type": "volume", "tiers": tiers})
    g = rate(graduated, D(6000))
    assert g.amount == D("10") + D("32") + D("2") + D("5")  # 1000*.01 + 4000*.008 + 2 + 1000*.005
    assert [(t.tier, t.quantity) for t in g.tiers] == [(1, 1000), (2, 4000), (3, 1000)]
    assert rate(volume, D(6000)).amount == D("30")  # all 6000 at tier 3
    assert rate(volume, D(3000)).amount == D("24") + D("2")
    assert rate(graduated, D(0)).amount == 0 and rate(volume, D(0)).amount == 0


def test_percentage_with_per_event_bounds() -> None:
    model = parse_price_model(
        {"type": "percentage", "percent": "2.5", "minPerUnit": "0.10", "maxPerUnit": "5"}
    )
    assert rate(model, D(100), events=1).amount == D("2.5")
    assert rate(model, D(1), events=3).amount == D("0.30")  # the minimum, three events
    assert rate(model, D(10_000), events=2).amount == D("10")  # the maximum


def test_matrix_uses_listed_prices_then_the_default() -> None:
    model = parse_price_model(
        {
            "type": "dimension",
            "dimensions": ["cloud_provider"],
            "prices": [
                {"values": ["aws"], "model": {"type": "per_unit", "unitPrice": "0.0000166"}},
                {"values": ["gcp"], "model": {"type": "per_unit", "unitPrice": "0.0000125"}},
            ],
            "default": {"type": "per_unit", "unitPrice": "0.00002"},
        }
    )
    assert isinstance(model, ByDimension)
    rated = rate_by_dimension(
        model,
        [
            DimensionUsage(("gcp",), D(1_000_000)),
            DimensionUsage(("aws",), D(1_000_000)),
            DimensionUsage(("azure",), D(1_000_000)),
        ],
    )
    assert [(r.values, r.rated.amount) for r in rated] == [
        (("aws",), D("16.6")),
        (("azure",), D("20")),
        (("gcp",), D("12.5")),
    ]
    no_default = ByDimension(("x",), ((("a",), PerUnit(D(1))),))
    (unpriced,) = rate_by_dimension(no_default, [DimensionUsage(("b",), D(7))])
    assert not unpriced.priced and unpriced.rated.amount == 0


@pytest.mark.parametrize(
    "bad,words",
    [
        ({"type": "per_unit", "unitPrice": "-1"}, "cannot be negative"),
        ({"type": "per_unit"}, "unitPrice is required"),
        ({"type": "per_unit", "unitPrice": "0.0000000000001"}, "more than 12 decimal places"),
        ({"type": "package", "packageSize": 0, "packagePrice": "5"}, "must be positive"),
        (
            {
                "type": "graduated",
                "tiers": [
                    {"upTo": 10, "unitPrice": "1"},
                    {"upTo": 5, "unitPrice": "1"},
                    {"upTo": None, "unitPrice": "1"},
                ],
            },
            "may not overlap",
        ),
        (
            {
                "type": "graduated",
                "tiers": [{"upTo": None, "unitPrice": "1"}, {"upTo": None, "unitPrice": "1"}],
            },
            "only the last tier",
        ),
        ({"type": "volume", "tiers": [{"upTo": 10, "unitPrice": "1"}]}, "must have upTo null"),
        (
            {
                "type": "dimension",
                "dimensions": ["a"],
                "prices": [{"values": ["x", "y"], "model": {"type": "per_unit", "unitPrice": "1"}}],
            },
            "one value per dimension",
        ),
        ({"type": "weird"}, "type must be one of"),
        ({"type": "percentage", "percent": "1", "minPerUnit": "5", "maxPerUnit": "1"}, "above"),
    ],
)
def test_invalid_models_say_what_is_wrong(bad: dict, words: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError, match=words):
        parse_price_model(bad)


def test_models_round_trip_as_json() -> None:
    for data in (
        {"type": "per_unit", "unitPrice": "0.002"},
        {"type": "package", "packageSize": "1000", "packagePrice": "5.00", "allowPartial": False},
        {
            "type": "graduated",
            "tiers": [
                {"upTo": "10", "unitPrice": "1", "flatFee": "0"},
                {"upTo": None, "unitPrice": "0.5", "flatFee": "1"},
            ],
        },
    ):
        model = parse_price_model(data)
        assert parse_price_model(to_json(model)) == model


prices = st.decimals(min_value=0, max_value=10, places=4)
units = st.decimals(min_value=0, max_value=1_000_000, places=3)


@st.composite
def tier_lists(draw: st.DrawFn) -> tuple[Tier, ...]:
    bounds = sorted(set(draw(st.lists(st.integers(1, 100_000), min_size=1, max_size=4))))
    tier_prices = draw(st.lists(prices, min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    fees = draw(
        st.lists(
            st.decimals(min_value=0, max_value=5, places=2),
            min_size=len(bounds) + 1,
            max_size=len(bounds) + 1,
        )
    )
    bounded = [Tier(D(b), p, f) for b, p, f in zip(bounds, tier_prices, fees, strict=False)]
    return (*bounded, Tier(None, tier_prices[-1], fees[-1]))


@given(tier_lists(), units)
def test_amounts_are_never_negative(tiers: tuple[Tier, ...], used: Decimal) -> None:
    for model in (
        Graduated(tiers),
        Volume(tiers),
        PerUnit(tiers[0].unit_price),
        Package(D(7), tiers[0].unit_price),
    ):
        assert rate(model, used).amount >= 0


@given(tier_lists(), units)
def test_graduated_and_volume_agree_inside_the_first_tier(
    tiers: tuple[Tier, ...], used: Decimal
) -> None:
    first = tiers[0]
    inside = min(used, first.up_to) if first.up_to is not None else used
    assert rate(Graduated(tiers), inside).amount == rate(Volume(tiers), inside).amount
    if not first.flat_fee:
        assert (
            rate(Graduated(tiers), inside).amount == rate(PerUnit(first.unit_price), inside).amount
        )


@given(tier_lists(), units)
def test_graduated_at_most_per_unit_when_prices_fall(
    tiers: tuple[Tier, ...], used: Decimal
) -> None:
    falling = tuple(Tier(t.up_to, tiers[0].unit_price / (i + 1), D(0)) for i, t in enumerate(tiers))
    assert rate(Graduated(falling), used).amount <= rate(PerUnit(tiers[0].unit_price), used).amount


@given(tier_lists(), units, units)
def test_graduated_is_monotonic(tiers: tuple[Tier, ...], a: Decimal, b: Decimal) -> None:
    low, high = sorted((a, b))
    assert rate(Graduated(tiers), low).amount <= rate(Graduated(tiers), high).amount


@given(st.integers(1, 10_000), st.integers(0, 1_000_000), prices)
def test_package_blocks_round_up(size: int, used: int, price: Decimal) -> None:
    amount = rate(Package(D(size), price), D(used)).amount
    blocks = -(-used // size)  # ceiling division, independently
    assert amount == blocks * price


@given(units, units)
def test_included_units_come_off_first(used: Decimal, included: Decimal) -> None:
    rated = rate(PerUnit(D("0.01")), used, included=included)
    assert rated.billable_units == max(D(0), used - included)
    assert rated.amount == rated.billable_units * D("0.01")


def test_invoice_lines_fees_minimum_and_discounts() -> None:
    terms = inv.Terms(
        currency="USD",
        items=(inv.Item("calls", PerUnit(D("0.0125"))), inv.Item("gb", PerUnit(D("0.333")))),
        fees=(
            inv.Fee("platform", D("20"), recurring=True, prorated=True),
            inv.Fee("setup", D("99"), recurring=False),
        ),
        discounts=(
            inv.Discount("launch", inv.DiscountKind.PERCENT, D("10"), periods=1),
            inv.Discount(
                "gb promo", inv.DiscountKind.FIXED, D("50"), meter_api_name="gb", cap=D("1")
            ),
        ),
        minimum_spend=D("150"),
    )
    usage = {"calls": inv.ItemUsage(D("1001")), "gb": inv.ItemUsage(D("3"))}
    first = inv.price(terms, usage, inv.PeriodFacts(index=0, covered=Fraction(1, 2)))
    amounts = {line.name: line.amount for line in first.lines}
    assert amounts["calls"] == D("12.51")  # 12.5125 rounds half up
    assert amounts["gb"] == D("1.00")  # 0.999 rounds to 1.00
    assert amounts["platform"] == D("10.00")  # prorated half
    assert amounts["setup"] == D("99.00")
    assert amounts["minimum spend"] == D("150") - D("122.51")
    assert first.subtotal == D("150.00")
    assert [(d.name, d.amount) for d in first.discounts] == [
        ("gb promo", D("1.00")),
        ("launch", D("14.90")),
    ]
    assert first.due_before_credits == D("134.10")
    later = inv.price(terms, usage, inv.PeriodFacts(index=1))
    assert "setup" not in {line.name for line in later.lines}
    assert {d.name for d in later.discounts} == {"gb promo"}  # launch was for one period


def test_rounding_follows_the_currency() -> None:
    assert round_money(D("1.005"), "USD") == D("1.01")
    assert round_money(D("1.5"), "JPY") == D("2")
    assert round_money(D("1.0005"), "KWD") == D("1.001")


@given(
    st.integers(min_value=-(10**18), max_value=10**18),
    st.integers(min_value=-12, max_value=3),  # amounts carry up to 12 decimals
    st.sampled_from(["USD", "JPY", "KWD", "EUR"]),
)
def test_written_keeps_the_minor_unit_and_every_digit(digits: int, exp: int, currency: str) -> None:
    """By the definition: at least the minor unit, never fewer digits than the value carries,
    the same number (a fast path returns stored amounts as they are)."""
    value = Decimal(digits).scaleb(exp)
    shown = written(value, currency)
    assert shown == value
    kept = shown.as_tuple().exponent
    assert isinstance(kept, int)
    assert -kept == max(exponent(currency), places(value))
