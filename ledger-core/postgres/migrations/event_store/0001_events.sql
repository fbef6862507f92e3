-- The event store: one row per event, one row per stream holding its current version.
--
-- Ordering of the store-wide log. Sequence numbers are handed out before commit, so a reader
-- that followed "sequence > last seen" would skip an event whose transaction took number 10 but
-- committed after the one that took 11. Instead each event records the id of the transaction
-- that appended it, and the log is ordered by (transaction_id, sequence). Readers only return
-- events whose transaction id is below the oldest transaction still running
-- (pg_snapshot_xmin of the current snapshot): every transaction below that bound has ended, so
-- nothing can later appear before a position a reader has returned. The price is that one slow
-- writing transaction holds back what readers see until it ends (never what they eventually
-- see, and never the order).
CREATE SCHEMA IF NOT EXISTS event_store;

CREATE TABLE event_store.streams (
    stream  text   PRIMARY KEY,
    version bigint NOT NULL CHECK (version >= 0)
);

CREATE SEQUENCE event_store.event_sequence AS bigint;

CREATE TABLE event_store.events (
    transaction_id bigint      NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    sequence       bigint      NOT NULL,
    event_id       uuid        NOT NULL,
    stream         text        NOT NULL,
    version        bigint      NOT NULL CHECK (version >= 0),
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL,
    data           jsonb       NOT NULL,
    metadata       jsonb       NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (transaction_id, sequence),
    CONSTRAINT events_stream_version_key UNIQUE (stream, version),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);

-- The original result of an append whose event ids are already stored:
--   'duplicate' when all of them are, in p_stream, at consecutive versions in the same order;
--   'idempotency_mismatch' when only some are, or elsewhere;
--   no row when none is.
CREATE FUNCTION event_store.find_retry(p_stream text, p_event_ids uuid[])
RETURNS TABLE (outcome text, stream_version bigint, last_transaction_id bigint,
               last_sequence bigint, conflicting_event_id uuid)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    v_found    integer;
    v_in_order integer;
    v_offsets  integer;
BEGIN
    SELECT count(*),
           count(*) FILTER (WHERE e.stream = p_stream),
           count(DISTINCT e.version - ids.ordinality) FILTER (WHERE e.stream = p_stream)
      INTO v_found, v_in_order, v_offsets
      FROM unnest(p_event_ids) WITH ORDINALITY AS ids(event_id, ordinality)
      JOIN event_store.events e ON e.event_id = ids.event_id;
    IF v_found = 0 THEN
        RETURN;
    END IF;
    IF v_found = cardinality(p_event_ids) AND v_in_order = v_found AND v_offsets = 1 THEN
        RETURN QUERY
            SELECT 'duplicate'::text, e.version, e.transaction_id, e.sequence, NULL::uuid
              FROM event_store.events e
             WHERE e.event_id = p_event_ids[cardinality(p_event_ids)];
    ELSE
        RETURN QUERY
            SELECT 'idempotency_mismatch'::text, NULL::bigint, NULL::bigint, NULL::bigint,
                   e.event_id
              FROM unnest(p_event_ids) AS ids(event_id)
              JOIN event_store.events e ON e.event_id = ids.event_id
             LIMIT 1;
    END IF;
END
$$;

-- Append events to one stream in one round trip. p_expected: >= 0 exact version, -1 no stream,
-- -2 any version, -3 the stream must exist. Returns one row:
--   'appended' with the stream's new version and the last event's position;
--   'duplicate' / 'idempotency_mismatch' as find_retry;
--   'wrong_expected_version' with the stream's actual version (NULL: no stream).
-- Concurrent appenders to one stream queue on the stream's advisory lock; the loser of a race
-- then sees the winner's version in the streams row and reports a conflict.
CREATE FUNCTION event_store.append_events(
    p_stream text, p_expected bigint, p_event_ids uuid[], p_event_types text[],
    p_schema_versions integer[], p_data jsonb[], p_metadata jsonb[])
RETURNS TABLE (outcome text, stream_version bigint, last_transaction_id bigint,
               last_sequence bigint, conflicting_event_id uuid)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_count    integer := cardinality(p_event_ids);
    v_last     bigint;
    v_first    bigint;
    v_sequence bigint;
    v_recorded_at timestamptz;
BEGIN
    RETURN QUERY SELECT * FROM event_store.find_retry(p_stream, p_event_ids);
    IF FOUND THEN
        RETURN;
    END IF;

    -- Serialise appenders of this stream before anything writes. A transaction gets its id at
    -- its first write attempt, and a row lock is only waited for after that attempt; so if
    -- appenders queued on the streams row, one that queued early could take a later version
    -- with a smaller transaction id, and the log (ordered by transaction id) would list the
    -- stream's versions out of order. An advisory lock needs no transaction id: whoever holds
    -- it gets its id after every earlier holder of the same stream, so log order within a
    -- stream is version order. (Class 1 is this lock's key space; hash collisions between
    -- streams only serialise them, never break anything.)
    PERFORM pg_advisory_xact_lock(1, hashtext(p_stream));

    IF p_expected = -1 THEN
        INSERT INTO event_store.streams AS s (stream, version) VALUES (p_stream, v_count - 1)
            ON CONFLICT (stream) DO NOTHING
            RETURNING s.version INTO v_last;
    ELSIF p_expected = -2 THEN
        INSERT INTO event_store.streams AS s (stream, version) VALUES (p_stream, v_count - 1)
            ON CONFLICT (stream) DO UPDATE SET version = s.version + v_count
            RETURNING s.version INTO v_last;
    ELSIF p_expected = -3 THEN
        UPDATE event_store.streams AS s SET version = s.version + v_count
         WHERE s.stream = p_stream
        RETURNING s.version INTO v_last;
    ELSE
        UPDATE event_store.streams AS s SET version = s.version + v_count
         WHERE s.stream = p_stream AND s.version = p_expected
        RETURNING s.version INTO v_last;
    END IF;

    IF v_last IS NULL THEN
        -- Lost a race, or a wrong belief. A concurrent identical retry may have just committed:
        -- this statement's fresh snapshot sees it, and reports the original result.
        RETURN QUERY SELECT * FROM event_store.find_retry(p_stream, p_event_ids);
        IF FOUND THEN
            RETURN;
        END IF;
        RETURN QUERY
            SELECT 'wrong_expected_version'::text,
                   (SELECT s.version FROM event_store.streams s WHERE s.stream = p_stream),
                   NULL::bigint, NULL::bigint, NULL::uuid;
        RETURN;
    END IF;

    v_first := v_last - v_count + 1;
    -- The wall clock now, under the stream's lock: recorded times follow version order within a
    -- stream (now() would be the transaction's start, which may precede a waiter's lock).
    v_recorded_at := clock_timestamp();
    -- One insert per event, so sequence numbers follow version order within the transaction
    -- (the log order of one stream must be its version order).
    FOR i IN 1 .. v_count LOOP
        v_sequence := nextval('event_store.event_sequence');
        INSERT INTO event_store.events
            (sequence, event_id, stream, version, event_type, schema_version, data, metadata,
             recorded_at)
        VALUES
            (v_sequence, p_event_ids[i], p_stream, v_first + i - 1, p_event_types[i],
             p_schema_versions[i], p_data[i], p_metadata[i], v_recorded_at);
    END LOOP;
    PERFORM pg_notify('event_store_appended', '');
    RETURN QUERY SELECT 'appended'::text, v_last, pg_current_xact_id()::text::bigint,
                        v_sequence, NULL::uuid;
END
$$;
