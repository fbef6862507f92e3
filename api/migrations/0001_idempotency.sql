-- Responses to requests that carried an idempotency key, so a retry gets the original answer.
CREATE SCHEMA IF NOT EXISTS api;

CREATE TABLE api.idempotency_keys (
    principal     text        NOT NULL,
    key           text        NOT NULL,
    -- SHA-256 of method, path and canonical body: the same key with another request is refused.
    fingerprint   text        NOT NULL,
    status_code   integer,
    content_type  text,
    etag          text,
    location      text,
    body          bytea,
    started_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    PRIMARY KEY (principal, key)
);

CREATE INDEX idempotency_keys_started_at ON api.idempotency_keys (started_at);
