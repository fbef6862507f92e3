-- Group commit: appends to many streams in one call, one transaction and one commit.
--
-- Each append in the batch keeps the single-append rules (expected version, retried event ids
-- recognised, per-stream advisory lock before any write) and gets its own outcome row, so a
-- conflict in one stream does not fail the others. The streams' locks are all taken first, in
-- one global order (by lock key), so two batches that share streams queue instead of
-- deadlocking; a single append holds only one such lock and never waits for another, so it
-- cannot close a cycle with a batch either. Taking every lock before the first write also
-- keeps the log-order argument of 0001: the transaction gets its id after every earlier holder
-- of each of its streams has ended.
--
-- p_counts[r] is how many of the flattened event arrays belong to append r, in order.
-- Returns one row per append: its index r (1-based) and the outcome columns of append_events.
CREATE FUNCTION event_store.append_batch(
    p_streams text[], p_expected bigint[], p_counts integer[], p_event_ids uuid[],
    p_event_types text[], p_schema_versions integer[], p_data jsonb[], p_metadata jsonb[])
RETURNS TABLE (request integer, outcome text, stream_version bigint,
               last_transaction_id bigint, last_sequence bigint, conflicting_event_id uuid)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_offset      integer := 0;
    v_count       integer;
    v_stream      text;
    v_expected    bigint;
    v_ids         uuid[];
    v_last        bigint;
    v_first       bigint;
    v_sequence    bigint;
    v_recorded_at timestamptz;
    v_appended    boolean := false;
    v_key         integer;
BEGIN
    FOR v_key IN SELECT DISTINCT hashtext(s) FROM unnest(p_streams) AS s ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(1, v_key);
    END LOOP;

    FOR r IN 1 .. cardinality(p_streams) LOOP
        v_stream   := p_streams[r];
        v_expected := p_expected[r];
        v_count    := p_counts[r];
        v_ids      := p_event_ids[v_offset + 1 : v_offset + v_count];

        RETURN QUERY SELECT r, f.* FROM event_store.find_retry(v_stream, v_ids) AS f;
        IF NOT FOUND THEN
            v_last := NULL;
            IF v_expected = -1 THEN
                INSERT INTO event_store.streams AS s (stream, version) VALUES (v_stream, v_count - 1)
                    ON CONFLICT (stream) DO NOTHING
                    RETURNING s.version INTO v_last;
            ELSIF v_expected = -2 THEN
                INSERT INTO event_store.streams AS s (stream, version) VALUES (v_stream, v_count - 1)
                    ON CONFLICT (stream) DO UPDATE SET version = s.version + v_count
                    RETURNING s.version INTO v_last;
            ELSIF v_expected = -3 THEN
                UPDATE event_store.streams AS s SET version = s.version + v_count
                 WHERE s.stream = v_stream
                RETURNING s.version INTO v_last;
            ELSE
                UPDATE event_store.streams AS s SET version = s.version + v_count
                 WHERE s.stream = v_stream AND s.version = v_expected
                RETURNING s.version INTO v_last;
            END IF;

            IF v_last IS NULL THEN
                RETURN QUERY
                    SELECT r, 'wrong_expected_version'::text,
                           (SELECT s.version FROM event_store.streams s WHERE s.stream = v_stream),
                           NULL::bigint, NULL::bigint, NULL::uuid;
            ELSE
                v_first := v_last - v_count + 1;
                v_recorded_at := clock_timestamp();
                FOR i IN 1 .. v_count LOOP
                    v_sequence := nextval('event_store.event_sequence');
                    INSERT INTO event_store.events
                        (sequence, event_id, stream, version, event_type, schema_version, data,
                         metadata, recorded_at)
                    VALUES
                        (v_sequence, p_event_ids[v_offset + i], v_stream, v_first + i - 1,
                         p_event_types[v_offset + i], p_schema_versions[v_offset + i],
                         p_data[v_offset + i], p_metadata[v_offset + i], v_recorded_at);
                END LOOP;
                v_appended := true;
                RETURN QUERY SELECT r, 'appended'::text, v_last,
                                    pg_current_xact_id()::text::bigint, v_sequence, NULL::uuid;
            END IF;
        END IF;
        v_offset := v_offset + v_count;
    END LOOP;

    IF v_appended THEN
        PERFORM pg_notify('event_store_appended', '');
    END IF;
END
$$;

-- A single append is a batch of one: one definition of the append rules instead of two.
CREATE OR REPLACE FUNCTION event_store.append_events(
    p_stream text, p_expected bigint, p_event_ids uuid[], p_event_types text[],
    p_schema_versions integer[], p_data jsonb[], p_metadata jsonb[])
RETURNS TABLE (outcome text, stream_version bigint, last_transaction_id bigint,
               last_sequence bigint, conflicting_event_id uuid)
LANGUAGE sql AS $$
    SELECT b.outcome, b.stream_version, b.last_transaction_id, b.last_sequence,
           b.conflicting_event_id
      FROM event_store.append_batch(ARRAY[p_stream], ARRAY[p_expected],
                                    ARRAY[cardinality(p_event_ids)], p_event_ids,
                                    p_event_types, p_schema_versions, p_data, p_metadata) AS b
$$;
