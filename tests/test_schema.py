"""The checked-in SDL is the schema: CI fails when someone changes one without the other."""

from __future__ import annotations

from pathlib import Path

from meterflow.graphql_api import schema

SDL = Path(__file__).resolve().parent.parent / "schema.graphql"


def test_schema_graphql_is_up_to_date() -> None:
    assert SDL.read_text() == schema.as_str() + "\n", (
        "schema.graphql is stale: run `meterflow schema schema.graphql` and commit it"
    )


def test_contract_names_exist() -> None:
    sdl = schema.as_str()
    for name in (
        "customer(customerId: String!): Customer",
        "customers(first: Int",
        "meter(meterApiName: String!): Meter",
        "meters(status: MeterStatus",
        "createCustomer(input: CreateCustomerInput!): CreateCustomerResult!",
        "updateCustomer(input: UpdateCustomerInput!): UpdateCustomerResult!",
        "createMeter(input: CreateMeterInput!): CreateMeterResult!",
        "updateMeter(input: UpdateMeterInput!): UpdateMeterResult!",
        "activateMeter(meterApiName: String!): MeterResult!",
        "deprecateMeter(meterApiName: String!): MeterResult!",
        "interface Error",
        # Payments (issue 13).
        "connectStripe(input: ConnectStripeInput!): ConnectStripeResult!",
        "disconnectStripe: StripeConnection!",
        "setAutoTopUp(input: SetAutoTopUpInput!): SetAutoTopUpResult!",
        "createTopUp(customerId: String!, amount: Decimal!",
        "topUps(customerId: String!",
        "payment: InvoicePayment",
        "stripeCustomerId: String",
        "autoTopUp: AutoTopUp",
        "stripe: StripeConnection!",
    ):
        assert name in sdl, name
