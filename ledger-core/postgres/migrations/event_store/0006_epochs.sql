-- Epochs: log positions that survive a restore into another cluster.
--
-- A position's first half was the appending transaction's id, and readers showed an event only
-- below the oldest running transaction (0001). Transaction ids belong to a cluster, not to the
-- data: after pg_dump / pg_restore into a new cluster, or a move by logical replication, the
-- new cluster's counter usually starts below the stored ids. The old log would then read as
-- empty until the counter caught up, and new events would sort before every checkpoint kept by
-- projectors, which would skip them.
--
-- So the log is now ordered by a logical transaction id: the cluster's transaction id plus the
-- offset of the current epoch. Epoch 0 has offset 0, so every stored event, checkpoint and kept
-- answer keeps its position and existing logs migrate without rewriting a row. When a database
-- is found whose cluster counter (plus the offset) no longer lies above every stored position,
-- a new epoch begins whose offset puts the counter's next ids above them all: positions stay
-- monotonic across the restore, and the visibility rule of 0001 holds within the epoch
-- (transaction id + offset below the oldest running transaction + offset). The store begins
-- the epoch when it opens (`event_store.begin_epoch()`, after the cheap
-- `event_store.epoch_outdated()`); an operator may call the same function after a restore.
CREATE TABLE event_store.epochs (
    epoch           integer     PRIMARY KEY CHECK (epoch >= 0),
    -- Added to the cluster's transaction ids of this epoch to give log positions.
    position_offset bigint      NOT NULL,
    -- The cluster's transaction id that began the epoch; every later transaction of that
    -- cluster has a larger one. Writers check it: a smaller id means the database moved to
    -- another cluster while its writers ran (see the store's append).
    started_xid     bigint      NOT NULL,
    -- The highest stored position when the epoch began (NULL: none).
    after_commit    bigint,
    started_at      timestamptz NOT NULL DEFAULT now()
);

INSERT INTO event_store.epochs (epoch, position_offset, started_xid, after_commit)
VALUES (0, 0, pg_current_xact_id()::text::bigint,
        (SELECT max(transaction_id) FROM event_store.events));

-- The logical transaction id of the calling transaction (assigning it an id if it has none).
-- Writers read the offset in the statement that takes their id; this is the same rule for
-- anything that inserts by SQL and relies on the column's default.
CREATE FUNCTION event_store.current_transaction_position() RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT pg_current_xact_id()::text::bigint + e.position_offset
      FROM event_store.epochs e ORDER BY e.epoch DESC LIMIT 1
$$;

ALTER TABLE event_store.events
    ALTER COLUMN transaction_id SET DEFAULT event_store.current_transaction_position();

-- Whether the database needs a new epoch: the cluster's next transaction ids, plus the current
-- offset, do not all lie above the highest stored position (the database was restored into, or
-- moved to, a cluster whose counter is behind), or the cluster's counter is below the id that
-- began the current epoch (the database moved to another cluster, whatever its counter).
-- Within one cluster neither holds: every stored position of the current epoch came from an id
-- below the snapshot's xmax, and ids only grow. Cheap (two index probes); it only reads.
CREATE FUNCTION event_store.epoch_outdated() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint < e.started_xid
        OR pg_snapshot_xmax(pg_current_snapshot())::text::bigint + e.position_offset
           <= coalesce((SELECT max(transaction_id) FROM event_store.events), -1)
      FROM event_store.epochs e ORDER BY e.epoch DESC LIMIT 1
$$;

-- Begin a new epoch when the database needs one (see epoch_outdated); otherwise change
-- nothing. Returns the current epoch, its offset and whether this call began it. Safe to call
-- at any time and from many processes at once; call it in a transaction of its own, before
-- anything else in it reads event_store.epochs.
--
-- Every append reads the offset in the statement that takes its transaction id, and readers
-- read it in the statement that takes their visibility bound; both hold a share lock on
-- event_store.epochs until they end. ACCESS EXCLUSIVE here therefore waits for the appends
-- under way (which end before the highest position is read below, so it counts them) and holds
-- back new ones until the new epoch is committed; those then read the new offset with an id
-- taken after this transaction's, so their positions lie above every stored one.
CREATE FUNCTION event_store.begin_epoch()
RETURNS TABLE (epoch integer, position_offset bigint, began boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_epoch   integer;
    v_offset  bigint;
    v_started bigint;
    v_highest bigint;
    v_xid     bigint;
BEGIN
    LOCK TABLE event_store.epochs IN ACCESS EXCLUSIVE MODE;
    -- Fresh statements, fresh snapshots: another process may have begun the epoch meanwhile.
    SELECT e.epoch, e.position_offset, e.started_xid INTO v_epoch, v_offset, v_started
      FROM event_store.epochs e ORDER BY e.epoch DESC LIMIT 1;
    SELECT max(transaction_id) INTO v_highest FROM event_store.events;
    v_xid := pg_current_xact_id()::text::bigint;
    IF v_xid >= v_started AND (v_highest IS NULL OR v_xid + v_offset > v_highest) THEN
        RETURN QUERY SELECT v_epoch, v_offset, false;
        RETURN;
    END IF;
    -- This transaction's id maps to just above the highest stored position (or keeps the
    -- offset when that already holds); every later transaction of the cluster has a larger
    -- id, so its position is larger still.
    v_epoch := v_epoch + 1;
    v_offset := greatest(v_offset, coalesce(v_highest, -1) + 1 - v_xid);
    INSERT INTO event_store.epochs (epoch, position_offset, started_xid, after_commit)
    VALUES (v_epoch, v_offset, v_xid, v_highest);
    RETURN QUERY SELECT v_epoch, v_offset, true;
END
$$;
