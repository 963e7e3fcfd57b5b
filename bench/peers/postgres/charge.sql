-- charge.sql (pgbench) — one charge as a naive service writes it: one transaction per charge,
-- lock the member's row, check and decrement, append to the journal, commit (an fsync).
\set member random(0, :members - 1)
BEGIN;
SELECT credits FROM balances WHERE member_id = :member FOR UPDATE;
UPDATE balances SET credits = credits - 10 WHERE member_id = :member AND credits >= 10;
INSERT INTO journal (member_id, credits) VALUES (:member, -10);
COMMIT;
