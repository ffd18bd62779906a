from __future__ import annotations

import httpx

from tests.client import GraphQLClient


async def test_healthz_reports_postgres_and_redis(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["postgres"]["status"] == "ok"
    assert body["redis"]["status"] == "ok"


async def test_metrics_count_requests(http: httpx.AsyncClient, gql: GraphQLClient) -> None:
    def graphql_200(text: str) -> float:
        for line in text.splitlines():
            if (
                line.startswith("meterflow_http_requests_total{")
                and 'route="/graphql"' in line
                and 'status="200"' in line
                and 'method="POST"' in line
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = graphql_200((await http.get("/metrics")).text)
    for _ in range(3):
        await gql("{ meters { label } }")
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert graphql_200(response.text) == before + 3
    assert "meterflow_http_request_duration_seconds_bucket" in response.text
