-- The order events the API's consumers applied, one row per message: a message delivered
-- again (a redelivery, the same event on a second broker) is recognised by (source, id) and
-- changes nothing. Written after the message's effect, which is itself keyed per hold; ids
-- are kept for a week (the API purges older ones).
CREATE SCHEMA IF NOT EXISTS order_events;

CREATE TABLE order_events.processed_messages (
    source          text        NOT NULL,
    id              text        NOT NULL,
    type            text        NOT NULL,
    order_id        text        NOT NULL,
    -- The broker it came through first: rabbitmq or nats.
    consumer        text        NOT NULL,
    holds_changed   bigint      NOT NULL CHECK (holds_changed >= 0),
    holds_unchanged bigint      NOT NULL CHECK (holds_unchanged >= 0),
    processed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, id)
);

CREATE INDEX processed_messages_by_order ON order_events.processed_messages (order_id);

-- The hourly purge of ids past their retention.
CREATE INDEX processed_messages_by_time ON order_events.processed_messages (processed_at);
