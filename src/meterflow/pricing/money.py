"""Currencies and rounding: each line is rounded half-up to the currency's minor unit.

The one table of minor units (ISO 4217 exponents; a code not listed has 2). Amounts of money a
client sets (fees, minimums, free tiers, fixed discounts and caps, credit grants in the plan's
currency) must fit it; rates (unit prices, percentages, ratios) are not amounts and may carry
more places. Credits in a custom currency (a grant with a ratio) are counted in units to
CUSTOM_UNIT_PLACES places, the precision at which the wallet converts them.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal
from fractions import Fraction

from meterflow.errors import ValidationError

CUSTOM_UNIT_PLACES = 12
# Wide enough that writing any stored figure at its minor unit never overflows the default 28.
_WIDE = Context(prec=80)

# ISO 4217 minor-unit exponents that differ from 2.
_EXPONENTS = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
    "CLF": 4,
    "UYW": 4,
}


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-exponent(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def zero(currency: str) -> Decimal:
    return round_money(Decimal(0), currency)


def round_exact(amount: Fraction, currency: str) -> Decimal:
    """An exact rational amount rounded once, half-up (away from zero on a tie), to the
    currency's minor unit: no intermediate rounding of shares or seconds."""
    scale = 10 ** exponent(currency)
    scaled = abs(amount) * scale
    whole, rest = divmod(scaled.numerator, scaled.denominator)
    if 2 * rest >= scaled.denominator:
        whole += 1
    units = -whole if amount < 0 else whole
    return (Decimal(units) / scale).quantize(quantum(currency))


def places(value: Decimal) -> int:
    """Digits after the point that carry value (1.50 has 1; 100 and 1E+2 have 0)."""
    exp = value.normalize().as_tuple().exponent
    assert isinstance(exp, int)  # finite
    return max(0, -exp)


def checked_amount(value: Decimal, currency: str, *, field: str) -> Decimal:
    """An amount of money a client set: it must fit the currency's minor unit (9.995 USD does
    not: no invoice may carry a fraction of a cent). Returned at the minor unit (25 → 25.00)."""
    if value.is_finite() and places(value) > exponent(currency):
        unit = exponent(currency)
        raise ValidationError(
            f"{field} {value} has more decimal places than {currency.upper()} allows "
            f"({unit}: its minor unit is {quantum(currency)})",
            field=field,
        )
    return value.quantize(quantum(currency), context=_WIDE) if value.is_finite() else value


def checked_units(value: Decimal, places_allowed: int, *, what: str, field: str) -> Decimal:
    if value.is_finite() and places(value) > places_allowed:
        raise ValidationError(
            f"{field} {value} has more than {places_allowed} decimal places ({what})",
            field=field,
        )
    return value


def written(value: Decimal, currency: str) -> Decimal:
    """A money figure as written out: at least the currency's minor unit ("0.00", "25.00",
    JPY "0", KWD "0.000"), never fewer digits than it carries (a converted balance may have
    more, and writing it must not round it)."""
    exact = Decimal(value)
    minor = exponent(currency)
    if exact.is_finite() and exact.as_tuple().exponent == -minor:
        return exact  # already at the minor unit, as stored amounts are (the common case)
    keep = max(minor, places(exact))
    return exact.quantize(Decimal(1).scaleb(-keep), context=_WIDE)
