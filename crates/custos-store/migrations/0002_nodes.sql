-- Several custos nodes on one database (SPEC §3.9, issue 4).
--
-- request_nonces  nonces of signed requests (SPEC §4.6) still inside their time window, shared
--                 by every node so a replay sent to another node is refused too. Not ledger
--                 data: rows expire and are deleted (custos needs INSERT, SELECT, UPDATE and
--                 DELETE here). A nonce counts as recorded once its INSERT committed.
--
-- Checkpoints from several nodes are serialised with a transaction-level advisory lock (see
-- postgres/mod.rs, CHECKPOINT_LOCK), which needs no table privilege beyond INSERT/SELECT.

CREATE TABLE request_nonces (
    key_id   text   COLLATE "C" NOT NULL,
    nonce    text   COLLATE "C" NOT NULL,
    -- Unix second after which the nonce is forgotten (its timestamp can no longer pass).
    expires  bigint NOT NULL,
    PRIMARY KEY (key_id, nonce)
);

CREATE INDEX request_nonces_expires ON request_nonces (expires);
