-- Order reservations in flight and done (see `ledger_api::orders`): each order reserve is recorded
-- here before its first line is reserved, so that an attempt cut short by a crash is found and
-- compensated when an API starts, and a retry with the same key completes or answers it again.
CREATE TABLE api.order_sagas (
    -- The key's owner (`principal:<name>`) and the key: one attempt per key, as for commands.
    scope           text        NOT NULL,
    idempotency_key text        NOT NULL,
    order_id        text        NOT NULL,
    -- SHA-256 of method, path and canonical body: the same key with another request is refused.
    fingerprint     text        NOT NULL,
    principal       text        NOT NULL,
    correlation_id  text,
    -- The lines as reserved: SKU, reservation id, quantity, location, time-to-live.
    lines           jsonb       NOT NULL,
    status          text        NOT NULL CHECK (status IN (
                        'reserving', 'compensating', 'reserved', 'refused', 'released',
                        'confirmed')),
    -- The answer a retry gets: kept as soon as the outcome is decided (a refusal is kept
    -- before its compensation runs), absent while the lines are being reserved.
    answer          jsonb,
    started_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, idempotency_key),
    CHECK ((status = 'reserving') = (answer IS NULL))
);

-- At most one attempt holds (or is taking) stock for an order: a second key for the same order
-- is refused while the first is in flight or reserved.
CREATE UNIQUE INDEX order_sagas_holding
    ON api.order_sagas (order_id) WHERE status IN ('reserving', 'compensating', 'reserved');

-- What recovery looks for at start-up.
CREATE INDEX order_sagas_unfinished
    ON api.order_sagas (started_at) WHERE status IN ('reserving', 'compensating');
