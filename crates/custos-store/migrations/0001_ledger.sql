-- custos ledger on PostgreSQL (SPEC §3, §3.9).
--
-- ledger_entries      one row per entry: canonical bytes (primary), leaf hash, and the hashes of
--                     the complete Merkle subtrees this leaf closes (so every tree node is one
--                     row lookup), plus the §3.6 filter columns with their indexes.
-- ledger_checkpoints  every signed checkpoint, in the order issued.
-- ledger_state        one row: the tree size, the last leaf hash, the last ts and id, and the
--                     frontier. Sequencing locks it (SELECT ... FOR UPDATE), so writers in any
--                     number of processes produce one gap-free sequence and one tree.
--
-- Append-only is enforced here too: UPDATE, DELETE and TRUNCATE of entries and checkpoints
-- raise; the state row may only move forward.

CREATE TABLE ledger_state (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- Entries in the log (= the next seq).
    size       bigint  NOT NULL CHECK (size >= 0),
    -- Leaf hash of entry size-1 (32 zero bytes when empty): the next entry's prev_hash.
    last_leaf  bytea   NOT NULL CHECK (length(last_leaf) = 32),
    -- ts of entry size-1, nanoseconds since the epoch (ts never goes back).
    last_ts    bigint  NOT NULL,
    -- id of entry size-1 (ids sort like seqs).
    last_id    uuid,
    -- Hashes of the complete subtrees making up the tree, largest first (one per set bit of
    -- size), concatenated.
    frontier   bytea   NOT NULL CHECK (length(frontier) % 32 = 0)
);

INSERT INTO ledger_state (size, last_leaf, last_ts, last_id, frontier)
VALUES (0, decode(repeat('00', 32), 'hex'), 0, NULL, ''::bytea);

CREATE TABLE ledger_entries (
    seq         bigint   PRIMARY KEY CHECK (seq >= 0),
    id          uuid     NOT NULL UNIQUE,
    -- Sequencing time, nanoseconds since the epoch; non-decreasing in seq.
    ts          bigint   NOT NULL,
    tenant      text     COLLATE "C" NOT NULL,
    actor       text     COLLATE "C" NOT NULL,
    event_type  text     COLLATE "C" NOT NULL,
    action      text     COLLATE "C" NOT NULL,
    outcome     text     COLLATE "C" NOT NULL,
    -- 0 info, 1 low, 2 medium, 3 high, 4 critical ("at least" is >=).
    severity    smallint NOT NULL,
    resource    text     COLLATE "C",
    target      text     COLLATE "C",
    trace_id    text     COLLATE "C",
    session_id  text     COLLATE "C",
    -- RFC 8785 canonical bytes: the primary data.
    canonical   bytea    NOT NULL,
    -- SHA-256(0x00 || canonical).
    leaf_hash   bytea    NOT NULL CHECK (length(leaf_hash) = 32),
    -- The subtree hashes this leaf completes, levels 1..k (k = trailing one bits of seq),
    -- concatenated: the node at (level L, index i) is in the row seq = ((i + 1) << L) - 1 at
    -- byte (L - 1) * 32. NULL when the leaf completes none (even seq).
    nodes       bytea    CHECK (length(nodes) % 32 = 0)
);

-- Time ranges and seq_at_or_after (ts is non-decreasing in seq).
CREATE INDEX ledger_entries_ts ON ledger_entries (ts, seq);
-- SPEC §3.6 filters; the server always sets the tenant. Each ends in seq so a page in either
-- direction is an index range scan.
CREATE INDEX ledger_entries_tenant ON ledger_entries (tenant, seq);
CREATE INDEX ledger_entries_actor ON ledger_entries (tenant, actor, seq);
CREATE INDEX ledger_entries_event_type ON ledger_entries (tenant, event_type, seq);
-- COLLATE "C" makes LIKE 'prefix%' an index range.
CREATE INDEX ledger_entries_resource ON ledger_entries (tenant, resource, seq)
    WHERE resource IS NOT NULL;
CREATE INDEX ledger_entries_target ON ledger_entries (tenant, target, seq)
    WHERE target IS NOT NULL;
CREATE INDEX ledger_entries_trace ON ledger_entries (tenant, trace_id, seq)
    WHERE trace_id IS NOT NULL;
CREATE INDEX ledger_entries_session ON ledger_entries (tenant, session_id, seq)
    WHERE session_id IS NOT NULL;

CREATE TABLE ledger_checkpoints (
    -- 0-based position in the order issued.
    no            bigint PRIMARY KEY CHECK (no >= 0),
    -- Tree sizes of successive checkpoints strictly increase.
    size          bigint NOT NULL UNIQUE CHECK (size >= 0),
    issued_nanos  bigint NOT NULL,
    note          text   NOT NULL
);

-- Append-only, enforced by the database.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'custos: % on % is refused: the ledger is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER ledger_entries_append_only
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_entries_no_truncate
    BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_checkpoints_no_truncate
    BEFORE TRUNCATE ON ledger_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- The state row exists once and only moves forward.
CREATE FUNCTION ledger_state_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.size < OLD.size THEN
        RAISE EXCEPTION 'custos: the ledger size may not go back (% -> %)', OLD.size, NEW.size
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER ledger_state_forward
    BEFORE UPDATE ON ledger_state
    FOR EACH ROW EXECUTE FUNCTION ledger_state_forward();
CREATE TRIGGER ledger_state_no_delete
    BEFORE DELETE ON ledger_state
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_state_no_truncate
    BEFORE TRUNCATE ON ledger_state
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
