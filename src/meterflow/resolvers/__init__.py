"""Thin resolvers: authorize, open one unit of work, call a service, map to a type or union."""
