"""previewPrice over HTTP GraphQL: the plan builder's live preview is the rating engine's figure
(the console never prices anything itself)."""

from __future__ import annotations

from typing import Any

from meterflow.models import ApiKeyScope
from meterflow.services import accounts
from tests.client import GraphQLClient

PREVIEW = """query($m: JSON!, $q: Decimal!, $i: Decimal, $c: String! = "USD", $v: [String!]) {
  previewPrice(priceModel: $m, quantity: $q, includedUnits: $i, currency: $c,
               dimensionValues: $v) {
    __typename
    ... on PricePreview { currency units billableUnits amount priced
                          tiers { tier quantity unitPrice flatFee amount } }
    ... on ValidationError { code message field }
  }
}"""


async def preview(gql: GraphQLClient, model: dict[str, Any], quantity: str, **kw: Any) -> Any:
    return (await gql(PREVIEW, {"m": model, "q": quantity, **kw}))["previewPrice"]


async def test_block_pricing_with_free_units_is_the_amberflo_example(gql: GraphQLClient) -> None:
    # $5 per 1,000 calls, 5,000 free: 12,345 calls → 7,345 billable → 8 blocks → $40.00.
    block = {"type": "package", "packageSize": "1000", "packagePrice": "5"}
    result = await preview(gql, block, "12345", i="5000")
    assert result == {
        "__typename": "PricePreview",
        "currency": "USD",
        "units": "12345",
        "billableUnits": "7345",
        "amount": "40.00",
        "priced": True,
        "tiers": [{"tier": 1, "quantity": "8", "unitPrice": "5", "flatFee": "0", "amount": "40"}],
    }
    assert (await preview(gql, block, "4999", i="5000"))["amount"] == "0.00"


async def test_graduated_tiers_and_currency_rounding(gql: GraphQLClient) -> None:
    graduated = {
        "type": "graduated",
        "tiers": [
            {"upTo": "100", "unitPrice": "0.10", "flatFee": "1"},
            {"upTo": None, "unitPrice": "0.015"},
        ],
    }
    result = await preview(gql, graduated, "150")
    # 1 + 100 * 0.10 + 50 * 0.015 = 11.75
    assert result["amount"] == "11.75"
    assert [t["tier"] for t in result["tiers"]] == [1, 2]
    jpy = await preview(gql, {"type": "per_unit", "unitPrice": "0.6"}, "3", c="jpy")
    assert (jpy["currency"], jpy["amount"]) == ("JPY", "2")  # 1.8 rounds to the yen


async def test_a_dimension_model_prices_the_values_given(gql: GraphQLClient) -> None:
    model = {
        "type": "dimension",
        "dimensions": ["region"],
        "prices": [{"values": ["eu"], "model": {"type": "per_unit", "unitPrice": "2"}}],
    }
    assert (await preview(gql, model, "3", v=["eu"]))["amount"] == "6.00"
    unpriced = await preview(gql, model, "3", v=["us"])
    assert (unpriced["priced"], unpriced["amount"]) == (False, "0.00")
    missing = await preview(gql, model, "3")
    assert (missing["__typename"], missing["field"]) == ("ValidationError", "dimensionValues")


async def test_invalid_input_is_a_validation_error_naming_the_field(gql: GraphQLClient) -> None:
    bad_type = await preview(gql, {"type": "bogus"}, "1")
    assert bad_type["__typename"] == "ValidationError"
    assert bad_type["field"] == "priceModel.type"
    negative = await preview(gql, {"type": "per_unit", "unitPrice": "1"}, "-1")
    assert (negative["__typename"], negative["field"]) == ("ValidationError", "quantity")
    currency = await preview(gql, {"type": "per_unit", "unitPrice": "1"}, "1", c="dollars")
    assert (currency["__typename"], currency["field"]) == ("ValidationError", "currency")


async def test_an_ingest_key_may_not_preview(gql: GraphQLClient, session_factory: Any) -> None:
    from meterflow.db import unit_of_work

    async with unit_of_work(session_factory) as session:
        account = await accounts.create_account(session, name="ingest only")
        issued = await accounts.issue_api_key(
            session, account_id=account.id, name="k", scope=ApiKeyScope.INGEST
        )
    response = await gql.post(
        PREVIEW, {"m": {"type": "per_unit", "unitPrice": "1"}, "q": "1"}, key=issued.secret
    )
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
