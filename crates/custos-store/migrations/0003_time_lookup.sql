-- Finding the first entry at or after a time (SPEC §3.6 time ranges) without an index on ts.
--
-- ts never goes back in seq order (the writer clamps it; import refuses a record whose ts goes
-- back), so the first seq at or after a time is a binary search over the primary key: about
-- log2(size) index probes, inside the database, in one call. It replaces the (ts, seq) index,
-- which every append had to maintain — one index of ten — for this lookup alone.
--
-- Returns the size when no entry is that late. STABLE: within one statement it sees the
-- statement's snapshot, in which the state row and the entries always agree.
CREATE FUNCTION ledger_seq_at_or_after(at bigint) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    lo     bigint := 0;
    hi     bigint;
    mid    bigint;
    mid_ts bigint;
BEGIN
    SELECT size INTO hi FROM ledger_state WHERE singleton;
    WHILE lo < hi LOOP
        mid := lo + (hi - lo) / 2;
        SELECT ts INTO mid_ts FROM ledger_entries WHERE seq = mid;
        IF mid_ts >= at THEN
            hi := mid;
        ELSE
            lo := mid + 1;
        END IF;
    END LOOP;
    RETURN lo;
END;
$$;

DROP INDEX ledger_entries_ts;
