-- Answers of keyed commands, kept in the same transaction as their events. The group commit
-- itself is now a handful of set-based statements sent by the store (see `store.rs`): lock
-- the streams, read their versions, then one multi-row insert each for versions, events and
-- answers; the append functions of 0001 and 0002 stay for readers of older releases, unused.
--
-- Positions. An event's position stays (appending transaction id, sequence). The sequence is
-- now the event's ordinal within its transaction (1, 2, 3, ...) rather than a number drawn from
-- a global sequence: the transaction id already orders transactions, so the ordinal is enough
-- to order (and tell apart) the events of one, and it costs no call per event. Events written
-- before keep their (larger) sequence numbers; as their transaction ids are all smaller, the
-- log order is unchanged.

CREATE TABLE event_store.answers (
    scope       text        NOT NULL,
    key         text        NOT NULL,
    fingerprint text        NOT NULL,
    answer      jsonb       NOT NULL,
    -- The position of the command's last event, when it appended any; kept beside the answer
    -- (and put into it when it is read) so that writing an answer never rewrites its JSON.
    position_commit  bigint,
    position_prepare bigint,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

-- Serves the retention purge (oldest first). Answers arrive in time order, so a block range
-- index finds the old ones at a fraction of a B-tree's cost on every insert.
CREATE INDEX answers_by_recorded_at ON event_store.answers USING brin (recorded_at);

-- Statistics. The append and the readers plan their statements once per connection; a plan
-- made while a table had no statistics (a fresh database) would live on. The store also
-- analyzes these tables itself as they grow (see `statistics.rs`); these settings make the
-- server's own autovacuum do it sooner too, instead of after a tenth of the table changed.
ALTER TABLE event_store.events SET (
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.05
);
ALTER TABLE event_store.streams SET (autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE event_store.answers SET (autovacuum_analyze_scale_factor = 0.02);
