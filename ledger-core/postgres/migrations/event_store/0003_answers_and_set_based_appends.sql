-- Answers of keyed commands, kept in the same transaction as their events; and appends written
-- with a handful of set-based statements per group commit instead of a few per event.
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
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

-- Serves the retention purge (oldest first).
CREATE INDEX answers_by_recorded_at ON event_store.answers (recorded_at);

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

-- Append a group of requests, each to its own stream, in one transaction.
--
-- Request r has p_counts[r] events (the next ones of the flattened event arrays; zero for a
-- request that only keeps answers, with stream ''), p_event_indexes[e] is event e's index
-- within its request (0-based), and p_answer_requests[a] says which request answer a belongs
-- to. Streams must be distinct (the caller splits a group otherwise).
--
-- 1. Answers already kept for any of the keys: report them all ('answered_before' rows) and
--    write nothing.
-- 2. Lock the streams in one global order (see 0001 and 0002 for why an advisory lock, taken
--    before the transaction gets its id), then take the transaction id.
-- 3. With p_careful, first look for each request's event ids among the stored events (a retry):
--    the original result is reported ('duplicate' / 'idempotency_mismatch') and the request
--    writes nothing. The caller asks for this only after a unique violation, so the usual path
--    pays no such look-up.
-- 4. Check every remaining request's expected version against its stream's version: one read.
-- 5. Write the streams' new versions, the events and the answers of the requests that passed:
--    one statement each. An event id that is already stored makes the insert fail (unique
--    violation); the caller then retries each request with p_careful.
-- 6. Report each request: 'appended' (events written), 'answered' (only answers), or, for a
--    request whose expected version did not hold, its original result if its events are
--    stored already, otherwise 'wrong_expected_version' with the stream's version.
CREATE FUNCTION event_store.append_requests(
    p_streams text[], p_expected bigint[], p_counts integer[], p_careful boolean,
    p_event_ids uuid[], p_event_indexes integer[], p_event_types text[],
    p_schema_versions integer[], p_data jsonb[], p_metadata jsonb[],
    p_answer_requests integer[], p_answer_scopes text[], p_answer_keys text[],
    p_answer_fingerprints text[], p_answers jsonb[], p_answer_positioned boolean[])
RETURNS TABLE (request integer, outcome text, stream_version bigint,
               last_transaction_id bigint, last_sequence bigint, conflicting_event_id uuid,
               answer_scope text, answer_key text, answer_fingerprint text, answer jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_requests    integer := cardinality(p_streams);
    v_current     bigint[];
    v_ok          boolean[] := array_fill(false, ARRAY[v_requests]);
    v_done        boolean[] := array_fill(false, ARRAY[v_requests]);
    v_first       bigint[] := array_fill(NULL::bigint, ARRAY[v_requests]);
    v_last        bigint[] := array_fill(NULL::bigint, ARRAY[v_requests]);
    v_last_seq    bigint[] := array_fill(NULL::bigint, ARRAY[v_requests]);
    v_event_req   integer[];
    v_txid        bigint;
    v_now         timestamptz;
    v_offset      integer := 0;
    v_appended    boolean := false;
    v_retry       record;
    v_expected    bigint;
    v_cur         bigint;
    v_count       integer;
BEGIN
    IF (SELECT count(DISTINCT s) <> count(*) FROM unnest(p_streams) AS s WHERE s <> '') THEN
        RAISE EXCEPTION 'append_requests needs distinct streams';
    END IF;

    -- 1. Keys answered before.
    IF cardinality(p_answer_keys) > 0 THEN
        RETURN QUERY
            SELECT a.r, 'answered_before'::text, NULL::bigint, NULL::bigint, NULL::bigint,
                   NULL::uuid, k.scope, k.key, k.fingerprint, k.answer
              FROM unnest(p_answer_requests, p_answer_scopes, p_answer_keys) AS a(r, sc, ky)
              JOIN event_store.answers k ON k.scope = a.sc AND k.key = a.ky;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    -- 2. Stream locks in one global order, then the transaction id.
    PERFORM pg_advisory_xact_lock(1, k)
       FROM unnest(ARRAY(SELECT DISTINCT hashtext(s) FROM unnest(p_streams) AS s
                          WHERE s <> '' ORDER BY 1)) AS k;
    v_txid := pg_current_xact_id()::text::bigint;
    -- The wall clock now, under the streams' locks: recorded times follow version order
    -- within a stream.
    v_now := clock_timestamp();

    -- 3. With p_careful, retries of stored events first.
    IF p_careful THEN
        FOR r IN 1 .. v_requests LOOP
            v_count := p_counts[r];
            IF v_count > 0 THEN
                SELECT * INTO v_retry
                  FROM event_store.find_retry(p_streams[r],
                                              p_event_ids[v_offset + 1 : v_offset + v_count]);
                IF FOUND THEN
                    RETURN QUERY SELECT r, v_retry.outcome, v_retry.stream_version,
                                        v_retry.last_transaction_id, v_retry.last_sequence,
                                        v_retry.conflicting_event_id, NULL::text, NULL::text,
                                        NULL::text, NULL::jsonb;
                    v_done[r] := true;  -- answered: neither checked nor written below
                END IF;
            END IF;
            v_offset := v_offset + v_count;
        END LOOP;
        v_offset := 0;
    END IF;

    -- 4. Expected versions against the streams' versions.
    SELECT array_agg(st.version ORDER BY q.r) INTO v_current
      FROM unnest(p_streams) WITH ORDINALITY AS q(stream, r)
      LEFT JOIN event_store.streams st ON st.stream = q.stream;
    v_event_req := array_fill(0, ARRAY[cardinality(p_event_ids)]);
    FOR r IN 1 .. v_requests LOOP
        v_count := p_counts[r];
        v_expected := p_expected[r];
        v_cur := v_current[r];
        IF v_done[r] THEN
            NULL;
        ELSIF v_count = 0 THEN
            v_ok[r] := true;
        ELSE
            v_ok[r] := CASE
                WHEN v_expected = -1 THEN v_cur IS NULL
                WHEN v_expected = -2 THEN true
                WHEN v_expected = -3 THEN v_cur IS NOT NULL
                ELSE v_cur = v_expected
            END;
            IF v_ok[r] THEN
                v_first[r] := coalesce(v_cur, -1) + 1;
                v_last[r] := v_first[r] + v_count - 1;
                v_last_seq[r] := v_offset + v_count;
                FOR e IN v_offset + 1 .. v_offset + v_count LOOP
                    v_event_req[e] := r;
                END LOOP;
                v_appended := true;
            END IF;
        END IF;
        v_offset := v_offset + v_count;
    END LOOP;

    -- 5. Streams, events, answers.
    IF v_appended THEN
        INSERT INTO event_store.streams AS s (stream, version)
        SELECT q.stream, q.last
          FROM unnest(p_streams, v_last) AS q(stream, last)
         WHERE q.last IS NOT NULL
        ON CONFLICT (stream) DO UPDATE SET version = excluded.version;

        INSERT INTO event_store.events
            (transaction_id, sequence, event_id, stream, version, event_type, schema_version,
             data, metadata, recorded_at)
        SELECT v_txid, e.ordinal, e.id, p_streams[e.req], v_first[e.req] + e.idx, e.type,
               e.schema_version, e.data, e.metadata, v_now
          FROM unnest(p_event_ids, v_event_req, p_event_indexes, p_event_types,
                      p_schema_versions, p_data, p_metadata)
               WITH ORDINALITY AS e(id, req, idx, type, schema_version, data, metadata, ordinal)
         WHERE e.req > 0;
    END IF;

    INSERT INTO event_store.answers (scope, key, fingerprint, answer, recorded_at)
    SELECT a.scope, a.key, a.fingerprint,
           CASE WHEN a.positioned AND v_last_seq[a.req] IS NOT NULL
                THEN jsonb_set(a.answer, '{done,position}',
                               jsonb_build_object('commit', v_txid,
                                                  'prepare', v_last_seq[a.req]))
                ELSE a.answer END,
           v_now
      FROM unnest(p_answer_requests, p_answer_scopes, p_answer_keys, p_answer_fingerprints,
                  p_answers, p_answer_positioned)
           AS a(req, scope, key, fingerprint, answer, positioned)
     WHERE v_ok[a.req];

    IF v_appended THEN
        PERFORM pg_notify('event_store_appended', '');
    END IF;

    -- 6. One row per request (retries found in step 3 were reported there).
    v_offset := 0;
    FOR r IN 1 .. v_requests LOOP
        v_count := p_counts[r];
        IF v_done[r] THEN
            NULL;
        ELSIF v_ok[r] THEN
            RETURN QUERY SELECT r,
                CASE WHEN v_count > 0 THEN 'appended' ELSE 'answered' END,
                v_last[r], CASE WHEN v_count > 0 THEN v_txid END, v_last_seq[r], NULL::uuid,
                NULL::text, NULL::text, NULL::text, NULL::jsonb;
        ELSIF v_count > 0 THEN
            SELECT * INTO v_retry
              FROM event_store.find_retry(p_streams[r],
                                          p_event_ids[v_offset + 1 : v_offset + v_count]);
            IF FOUND THEN
                RETURN QUERY SELECT r, v_retry.outcome, v_retry.stream_version,
                                    v_retry.last_transaction_id, v_retry.last_sequence,
                                    v_retry.conflicting_event_id, NULL::text, NULL::text,
                                    NULL::text, NULL::jsonb;
            ELSE
                RETURN QUERY SELECT r, 'wrong_expected_version'::text, v_current[r],
                                    NULL::bigint, NULL::bigint, NULL::uuid, NULL::text,
                                    NULL::text, NULL::text, NULL::jsonb;
            END IF;
        END IF;
        v_offset := v_offset + v_count;
    END LOOP;
END
$$;
