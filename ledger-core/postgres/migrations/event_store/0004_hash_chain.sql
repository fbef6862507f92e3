-- The hash chain: each event's hash covers the hash of the event before it in its stream and
-- the event's canonical form (README, "Tamper evidence"). Writers compute it before the append;
-- for the events written before this migration it is computed once, right after this script,
-- in the same transaction (by the store's code, which is the code that checks it), and the
-- next migration then requires it.
ALTER TABLE event_store.events ADD COLUMN hash bytea;
