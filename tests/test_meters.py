"""Meters and their lifecycle through GraphQL over HTTP."""

from __future__ import annotations

import pytest

from tests.client import GraphQLClient
from tests.helpers import event, ingest

METER_FIELDS = """meterApiName label description unit meterType dimensions
                  aggregationDimension useInBilling status activatedAt deprecatedAt"""

CREATE = f"""
mutation($input: CreateMeterInput!) {{
  createMeter(input: $input) {{
    __typename
    ... on Meter {{ {METER_FIELDS} }}
    ... on Error {{ code message }}
    ... on ValidationError {{ field }}
  }}
}}"""

UPDATE = f"""
mutation($input: UpdateMeterInput!) {{
  updateMeter(input: $input) {{
    __typename
    ... on Meter {{ {METER_FIELDS} }}
    ... on Error {{ code message }}
    ... on InvalidTransitionError {{ currentStatus }}
  }}
}}"""

TRANSITION = """
mutation($name: String!) {{
  {op}(meterApiName: $name) {{
    __typename
    ... on Meter {{ status activatedAt deprecatedAt }}
    ... on Error {{ code message }}
    ... on InvalidTransitionError {{ currentStatus }}
  }}
}}"""

GET = f"query($name: String!) {{ meter(meterApiName: $name) {{ {METER_FIELDS} }} }}"
LIST = "query($status: MeterStatus) { meters(status: $status) { meterApiName status } }"


async def transition(gql: GraphQLClient, op: str, name: str) -> dict:
    return (await gql(TRANSITION.format(op=op), {"name": name}))[op]


@pytest.mark.parametrize(
    "meter_type,extra",
    [
        ("SUM", {}),
        ("COUNT", {}),
        ("MAX", {}),
        ("LATEST", {}),
        ("RUNNING_TOTAL", {}),
        ("UNIQUE_COUNT", {"dimensions": ["user_id"], "aggregationDimension": "user_id"}),
        ("DURATION", {"dimensions": ["instance_id"]}),
    ],
)
async def test_every_meter_type_can_be_created(
    gql: GraphQLClient, meter_type: str, extra: dict
) -> None:
    name = f"m-{meter_type.lower()}"
    result = (
        await gql(
            CREATE, {"input": {"meterApiName": name, "meterType": meter_type, "unit": "u", **extra}}
        )
    )["createMeter"]
    assert result["__typename"] == "Meter"
    assert result["meterType"] == meter_type
    assert result["status"] == "DRAFT"
    assert result["label"] == name  # defaults to the api name
    assert result["dimensions"] == extra.get("dimensions", [])
    assert result["aggregationDimension"] == extra.get("aggregationDimension")
    assert (await gql(GET, {"name": name}))["meter"]["meterType"] == meter_type


async def test_unique_count_needs_an_aggregation_dimension(gql: GraphQLClient) -> None:
    missing = (await gql(CREATE, {"input": {"meterApiName": "mau", "meterType": "UNIQUE_COUNT"}}))[
        "createMeter"
    ]
    assert missing["__typename"] == "ValidationError"
    assert missing["field"] == "aggregationDimension"
    foreign = (
        await gql(
            CREATE,
            {
                "input": {
                    "meterApiName": "mau",
                    "meterType": "UNIQUE_COUNT",
                    "dimensions": ["region"],
                    "aggregationDimension": "user_id",
                }
            },
        )
    )["createMeter"]
    assert foreign["__typename"] == "ValidationError"
    assert "must be one of the meter's dimensions" in foreign["message"]
    on_sum = (
        await gql(
            CREATE,
            {"input": {"meterApiName": "s", "meterType": "SUM", "aggregationDimension": "x"}},
        )
    )["createMeter"]
    assert on_sum["__typename"] == "ValidationError"
    assert "only to UNIQUE_COUNT" in on_sum["message"]


async def test_bad_names_and_dimensions_are_rejected(gql: GraphQLClient) -> None:
    for payload, field in [
        ({"meterApiName": "has space", "meterType": "SUM"}, "meterApiName"),
        ({"meterApiName": "x" * 101, "meterType": "SUM"}, "meterApiName"),
        ({"meterApiName": "ok", "meterType": "SUM", "dimensions": ["a", "a"]}, "dimensions"),
        ({"meterApiName": "ok", "meterType": "SUM", "dimensions": ["1bad"]}, "dimensions"),
        ({"meterApiName": "ok", "meterType": "SUM", "label": "l" * 201}, "label"),
    ]:
        result = (await gql(CREATE, {"input": payload}))["createMeter"]
        assert result["__typename"] == "ValidationError", payload
        assert result["field"] == field, (payload, result)
    assert (await gql(GET, {"name": "ok"}))["meter"] is None


async def test_duplicate_meter_name_is_a_conflict(gql: GraphQLClient) -> None:
    await gql(CREATE, {"input": {"meterApiName": "calls", "meterType": "SUM"}})
    again = (await gql(CREATE, {"input": {"meterApiName": "calls", "meterType": "COUNT"}}))[
        "createMeter"
    ]
    assert again["__typename"] == "ConflictError"
    assert (await gql(GET, {"name": "calls"}))["meter"]["meterType"] == "SUM"


async def test_lifecycle_draft_edit_active_locked_deprecated_readable(gql: GraphQLClient) -> None:
    await gql(
        CREATE, {"input": {"meterApiName": "calls", "meterType": "SUM", "dimensions": ["region"]}}
    )

    # DRAFT: editable, and fields left out stay as they were.
    edited = (
        await gql(
            UPDATE,
            {
                "input": {
                    "meterApiName": "calls",
                    "label": "API calls",
                    "dimensions": ["region", "endpoint"],
                }
            },
        )
    )["updateMeter"]
    assert edited["__typename"] == "Meter"
    assert edited["label"] == "API calls"
    assert edited["dimensions"] == ["region", "endpoint"]
    assert edited["meterType"] == "SUM"

    activated = await transition(gql, "activateMeter", "calls")
    assert activated["status"] == "ACTIVE"
    assert activated["activatedAt"] is not None

    # ACTIVE: locked, with a typed error that says why and what to do instead.
    refused = (await gql(UPDATE, {"input": {"meterApiName": "calls", "label": "changed"}}))[
        "updateMeter"
    ]
    assert refused["__typename"] == "InvalidTransitionError"
    assert refused["code"] == "INVALID_TRANSITION"
    assert refused["currentStatus"] == "ACTIVE"
    assert "deprecate it and create a new one" in refused["message"]
    assert (await gql(GET, {"name": "calls"}))["meter"]["label"] == "API calls"

    again = await transition(gql, "activateMeter", "calls")
    assert again["__typename"] == "InvalidTransitionError"
    assert again["currentStatus"] == "ACTIVE"

    deprecated = await transition(gql, "deprecateMeter", "calls")
    assert deprecated["status"] == "DEPRECATED"
    assert deprecated["deprecatedAt"] is not None

    # DEPRECATED: still readable, no further transitions, no edits.
    meter = (await gql(GET, {"name": "calls"}))["meter"]
    assert meter["status"] == "DEPRECATED"
    assert meter["label"] == "API calls"
    for op in ("activateMeter", "deprecateMeter"):
        result = await transition(gql, op, "calls")
        assert result["__typename"] == "InvalidTransitionError", op
        assert result["currentStatus"] == "DEPRECATED"
    edit = (await gql(UPDATE, {"input": {"meterApiName": "calls", "unit": "x"}}))["updateMeter"]
    assert edit["__typename"] == "InvalidTransitionError"


async def test_transitions_on_unknown_meter_are_not_found(gql: GraphQLClient) -> None:
    for op in ("activateMeter", "deprecateMeter"):
        result = await transition(gql, op, "nope")
        assert result["__typename"] == "NotFoundError"
    update = (await gql(UPDATE, {"input": {"meterApiName": "nope", "unit": "x"}}))["updateMeter"]
    assert update["__typename"] == "NotFoundError"


async def test_draft_update_is_validated_as_a_whole(gql: GraphQLClient) -> None:
    await gql(
        CREATE,
        {
            "input": {
                "meterApiName": "mau",
                "meterType": "UNIQUE_COUNT",
                "dimensions": ["user_id"],
                "aggregationDimension": "user_id",
            }
        },
    )
    # Dropping the aggregation dimension from the dimensions breaks the UNIQUE_COUNT rule.
    result = (await gql(UPDATE, {"input": {"meterApiName": "mau", "dimensions": ["region"]}}))[
        "updateMeter"
    ]
    assert result["__typename"] == "ValidationError"
    # Switching the type to SUM while keeping an aggregation dimension is also refused ...
    to_sum = (await gql(UPDATE, {"input": {"meterApiName": "mau", "meterType": "SUM"}}))[
        "updateMeter"
    ]
    assert to_sum["__typename"] == "ValidationError"
    # ... and allowed once the aggregation dimension is cleared with it.
    ok = (
        await gql(
            UPDATE,
            {"input": {"meterApiName": "mau", "meterType": "SUM", "aggregationDimension": None}},
        )
    )["updateMeter"]
    assert ok["__typename"] == "Meter"
    assert ok["meterType"] == "SUM"
    assert ok["aggregationDimension"] is None


async def test_list_filters_by_status(gql: GraphQLClient) -> None:
    for name in ("b-draft", "a-active", "c-deprecated"):
        await gql(CREATE, {"input": {"meterApiName": name, "meterType": "SUM"}})
    await transition(gql, "activateMeter", "a-active")
    await transition(gql, "deprecateMeter", "c-deprecated")

    everything = (await gql(LIST))["meters"]
    assert [m["meterApiName"] for m in everything] == ["a-active", "b-draft", "c-deprecated"]
    for status, expected in [
        ("DRAFT", ["b-draft"]),
        ("ACTIVE", ["a-active"]),
        ("DEPRECATED", ["c-deprecated"]),
    ]:
        rows = (await gql(LIST, {"status": status}))["meters"]
        assert [m["meterApiName"] for m in rows] == expected


async def test_a_draft_meter_with_events_keeps_its_type_and_aggregation_dimension(
    gql: GraphQLClient,
) -> None:
    """Its rollups were built for the old type: deprecate and recreate, as Amberflo says."""
    for name in ("sampled", "unsampled"):
        created = await gql(
            CREATE,
            {
                "input": {
                    "meterApiName": name,
                    "meterType": "UNIQUE_COUNT",
                    "dimensions": ["user_id", "team"],
                    "aggregationDimension": "user_id",
                }
            },
        )
        assert created["createMeter"]["status"] == "DRAFT"
    report = await ingest(gql, [event("sampled", "c1", 1, user_id="u1", team="t")])
    assert report["accepted"] == 1, report

    for change, field in (
        ({"aggregationDimension": "team"}, "aggregationDimension"),
        ({"meterType": "SUM", "aggregationDimension": None}, "meterType"),
    ):
        refused = (await gql(UPDATE, {"input": {"meterApiName": "sampled", **change}}))[
            "updateMeter"
        ]
        assert refused["__typename"] == "ValidationError", refused
        assert refused["code"] == "VALIDATION_ERROR"
        assert field in refused["message"] and "already has events" in refused["message"]
        assert "deprecate" in refused["message"].lower()
        # Without events the same change is a plain edit.
        edited = (await gql(UPDATE, {"input": {"meterApiName": "unsampled", **change}}))[
            "updateMeter"
        ]
        assert edited["__typename"] == "Meter", edited
    kept = (await gql(GET, {"name": "sampled"}))["meter"]
    assert (kept["meterType"], kept["aggregationDimension"]) == ("UNIQUE_COUNT", "user_id")
    # Other traits of the sampled draft stay editable, and an unchanged type is no change.
    relabelled = (
        await gql(
            UPDATE,
            {"input": {"meterApiName": "sampled", "label": "Users", "meterType": "UNIQUE_COUNT"}},
        )
    )["updateMeter"]
    assert relabelled["label"] == "Users" and relabelled["status"] == "DRAFT"
