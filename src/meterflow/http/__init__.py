"""Non-GraphQL routes and ASGI layers: auth for /graphql, limits, health, metrics."""
