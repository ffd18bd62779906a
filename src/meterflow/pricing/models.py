"""Price models as data: parsed from JSON (the API's `priceModel`), validated, serialisable."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from meterflow.errors import ValidationError

MAX_UNIT_PRICE_PLACES = 12


@dataclass(frozen=True)
class Tier:
    up_to: Decimal | None  # inclusive upper bound of units; None = no limit (the last tier)
    unit_price: Decimal
    flat_fee: Decimal = Decimal(0)


@dataclass(frozen=True)
class PerUnit:
    unit_price: Decimal


@dataclass(frozen=True)
class Package:
    """`package_price` per `size` units; a started package is billed whole unless partial."""

    size: Decimal
    price: Decimal
    allow_partial: bool = False


@dataclass(frozen=True)
class Graduated:
    """Each unit is priced by the tier it falls in (tier 1 for the first units, and so on)."""

    tiers: tuple[Tier, ...]


@dataclass(frozen=True)
class Volume:
    """Every unit is priced by the one tier the total falls in."""

    tiers: tuple[Tier, ...]


@dataclass(frozen=True)
class Percentage:
    """A percentage of the metered value (e.g. of payment volume), clamped per event."""

    percent: Decimal
    min_per_unit: Decimal | None = None
    max_per_unit: Decimal | None = None


@dataclass(frozen=True)
class ByDimension:
    """A matrix: dimension values → model, with a default for combinations not listed."""

    dimensions: tuple[str, ...]
    prices: tuple[tuple[tuple[str, ...], SimpleModel], ...]
    default: SimpleModel | None = None

    def model_for(self, values: tuple[str, ...]) -> SimpleModel | None:
        for listed, model in self.prices:
            if listed == values:
                return model
        return self.default


SimpleModel = PerUnit | Package | Graduated | Volume | Percentage
PriceModel = SimpleModel | ByDimension


def _decimal(
    data: dict[str, Any],
    key: str,
    path: str,
    *,
    required: bool = True,
    allow_negative: bool = False,
) -> Decimal | None:
    raw = data.get(key)
    if raw is None:
        if required:
            raise ValidationError(f"{path}.{key} is required", field=f"{path}.{key}")
        return None
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float, Decimal)):
        raise ValidationError(f"{path}.{key} must be a decimal string", field=f"{path}.{key}")
    try:
        value = Decimal(str(raw))
    except InvalidOperation as exc:
        raise ValidationError(
            f"{path}.{key} {raw!r} is not a number", field=f"{path}.{key}"
        ) from exc
    if not value.is_finite():
        raise ValidationError(f"{path}.{key} must be finite", field=f"{path}.{key}")
    if value < 0 and not allow_negative:
        raise ValidationError(f"{path}.{key} cannot be negative", field=f"{path}.{key}")
    if -value.as_tuple().exponent > MAX_UNIT_PRICE_PLACES:  # type: ignore[operator]
        raise ValidationError(
            f"{path}.{key} has more than {MAX_UNIT_PRICE_PLACES} decimal places",
            field=f"{path}.{key}",
        )
    return value


def _tiers(data: dict[str, Any], path: str) -> tuple[Tier, ...]:
    raw = data.get("tiers")
    if not isinstance(raw, list) or not raw:
        raise ValidationError(f"{path}.tiers must be a non-empty list", field=f"{path}.tiers")
    tiers: list[Tier] = []
    for i, item in enumerate(raw):
        where = f"{path}.tiers[{i}]"
        if not isinstance(item, dict):
            raise ValidationError(f"{where} must be an object", field=where)
        up_to = _decimal(item, "upTo", where, required=False)
        unit_price = _decimal(item, "unitPrice", where)
        flat_fee = _decimal(item, "flatFee", where, required=False) or Decimal(0)
        assert unit_price is not None
        if up_to is not None and up_to <= 0:
            raise ValidationError(f"{where}.upTo must be positive", field=f"{where}.upTo")
        if tiers:
            previous = tiers[-1].up_to
            if previous is None:
                raise ValidationError(
                    f"{where} follows a tier without upTo: only the last tier may be unbounded",
                    field=where,
                )
            if up_to is not None and up_to <= previous:
                raise ValidationError(
                    f"{where}.upTo {up_to} must be above the previous tier's "
                    f"{previous}: tiers may not overlap",
                    field=f"{where}.upTo",
                )
        tiers.append(Tier(up_to, unit_price, flat_fee))
    if tiers[-1].up_to is not None:
        raise ValidationError(
            f"{path}: the last tier must have upTo null (no limit)", field=f"{path}.tiers"
        )
    return tuple(tiers)


def parse_simple(data: Any, path: str = "priceModel") -> SimpleModel:
    model = parse_price_model(data, path)
    if isinstance(model, ByDimension):
        raise ValidationError(f"{path}: a dimension model cannot nest another", field=path)
    return model


def parse_price_model(data: Any, path: str = "priceModel") -> PriceModel:
    if not isinstance(data, dict):
        raise ValidationError(f"{path} must be an object with a type", field=path)
    kind = data.get("type")
    if kind == "per_unit":
        price = _decimal(data, "unitPrice", path)
        assert price is not None
        return PerUnit(price)
    if kind == "package":
        size = _decimal(data, "packageSize", path)
        price = _decimal(data, "packagePrice", path)
        assert size is not None and price is not None
        if size <= 0:
            raise ValidationError(
                f"{path}.packageSize must be positive", field=f"{path}.packageSize"
            )
        return Package(size, price, bool(data.get("allowPartial", False)))
    if kind == "graduated":
        return Graduated(_tiers(data, path))
    if kind == "volume":
        return Volume(_tiers(data, path))
    if kind == "percentage":
        percent = _decimal(data, "percent", path)
        assert percent is not None
        low = _decimal(data, "minPerUnit", path, required=False)
        high = _decimal(data, "maxPerUnit", path, required=False)
        if low is not None and high is not None and low > high:
            raise ValidationError(
                f"{path}.minPerUnit is above maxPerUnit", field=f"{path}.minPerUnit"
            )
        return Percentage(percent, low, high)
    if kind == "dimension":
        dims = data.get("dimensions")
        if not isinstance(dims, list) or not dims or not all(isinstance(d, str) for d in dims):
            raise ValidationError(
                f"{path}.dimensions must be a non-empty list of keys", field=f"{path}.dimensions"
            )
        prices = []
        seen: set[tuple[str, ...]] = set()
        for i, entry in enumerate(data.get("prices") or []):
            where = f"{path}.prices[{i}]"
            values = entry.get("values") if isinstance(entry, dict) else None
            if (
                not isinstance(values, list)
                or len(values) != len(dims)
                or not all(isinstance(v, str) for v in values)
            ):
                raise ValidationError(
                    f"{where}.values must list one value per dimension {dims}",
                    field=f"{where}.values",
                )
            if tuple(values) in seen:
                raise ValidationError(
                    f"{where}.values {values} is listed twice", field=f"{where}.values"
                )
            seen.add(tuple(values))
            prices.append((tuple(values), parse_simple(entry.get("model"), f"{where}.model")))
        default = (
            parse_simple(data["default"], f"{path}.default")
            if data.get("default") is not None
            else None
        )
        if not prices and default is None:
            raise ValidationError(f"{path} needs prices or a default", field=path)
        return ByDimension(tuple(dims), tuple(prices), default)
    raise ValidationError(
        f"{path}.type must be one of per_unit, package, graduated, volume, percentage, "
        f"dimension; got {kind!r}",
        field=f"{path}.type",
    )


def _tier_json(tier: Tier) -> dict[str, Any]:
    return {
        "upTo": None if tier.up_to is None else str(tier.up_to),
        "unitPrice": str(tier.unit_price),
        "flatFee": str(tier.flat_fee),
    }


def to_json(model: PriceModel) -> dict[str, Any]:
    if isinstance(model, PerUnit):
        return {"type": "per_unit", "unitPrice": str(model.unit_price)}
    if isinstance(model, Package):
        return {
            "type": "package",
            "packageSize": str(model.size),
            "packagePrice": str(model.price),
            "allowPartial": model.allow_partial,
        }
    if isinstance(model, Graduated):
        return {"type": "graduated", "tiers": [_tier_json(t) for t in model.tiers]}
    if isinstance(model, Volume):
        return {"type": "volume", "tiers": [_tier_json(t) for t in model.tiers]}
    if isinstance(model, Percentage):
        return {
            "type": "percentage",
            "percent": str(model.percent),
            "minPerUnit": None if model.min_per_unit is None else str(model.min_per_unit),
            "maxPerUnit": None if model.max_per_unit is None else str(model.max_per_unit),
        }
    return {
        "type": "dimension",
        "dimensions": list(model.dimensions),
        "prices": [{"values": list(v), "model": to_json(m)} for v, m in model.prices],
        "default": None if model.default is None else to_json(model.default),
    }
