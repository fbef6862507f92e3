-- Every event carries its chain hash from now on: 32 bytes of SHA-256.
ALTER TABLE event_store.events
    ALTER COLUMN hash SET NOT NULL,
    ADD CONSTRAINT events_hash_length CHECK (octet_length(hash) = 32);

-- The server-side append functions of the first migrations take no recorded time and no hash,
-- so they can no longer write an event; the store has not called them since appends moved to
-- its group commit. Removed rather than left to fail.
DROP FUNCTION event_store.append_events(text, bigint, uuid[], text[], integer[], jsonb[], jsonb[]);
DROP FUNCTION event_store.append_batch(text[], bigint[], integer[], uuid[], text[], integer[], jsonb[], jsonb[]);
