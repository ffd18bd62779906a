"""The domain. Async functions `(session, *, account_id, ...)`; they never commit."""
