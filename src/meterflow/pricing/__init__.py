"""The rating engine: price models → amounts. Pure: Decimal only, no I/O, no database."""
