-- Leadership terms (fencing): every takeover increments term; leader-only
-- writes check leader_id and term in their own transaction. locked records
-- whether the holder also holds the session advisory lock, so that a
-- replica that acquires the lock afresh knows the holder's session ended.
ALTER TABLE leader ADD COLUMN term bigint NOT NULL DEFAULT 0;
ALTER TABLE leader ADD COLUMN locked boolean NOT NULL DEFAULT false;
-- previous_id and cause describe the last change of holder (for the
-- leader.changed event): cause is takeover or resign.
ALTER TABLE leader ADD COLUMN previous_id text NOT NULL DEFAULT '';
ALTER TABLE leader ADD COLUMN cause text NOT NULL DEFAULT '';
