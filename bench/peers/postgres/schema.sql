-- schema.sql — the naive PostgreSQL ledger peer: one balance row per member and an append-only
-- journal. Default durability (fsync on, synchronous_commit on): a COMMIT that returns is on disk.
CREATE TABLE balances (
  member_id bigint PRIMARY KEY,
  credits   bigint NOT NULL CHECK (credits >= 0)
);
CREATE TABLE journal (
  id        bigserial PRIMARY KEY,
  member_id bigint NOT NULL,
  credits   bigint NOT NULL,
  at        timestamptz NOT NULL DEFAULT now()
);
-- :members is set by ledger_peers.sh (psql -v members=N).
INSERT INTO balances SELECT g, 1000000000 FROM generate_series(0, :members - 1) AS g;
VACUUM ANALYZE balances;
