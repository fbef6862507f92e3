-- The answers of keyed commands are kept by the event store in the same transaction as the
-- commands' events (event_store.answers, or answers.answers beside EventStoreDB); the API's own
-- claim-and-complete table is no longer used.
DROP TABLE IF EXISTS api.idempotency_keys;
