-- Leadership terms (fencing); see the PostgreSQL migration of the same name.
ALTER TABLE leader ADD COLUMN term INTEGER NOT NULL DEFAULT 0;
ALTER TABLE leader ADD COLUMN locked INTEGER NOT NULL DEFAULT 0;
-- previous_id and cause describe the last change of holder (for the
-- leader.changed event): cause is takeover or resign.
ALTER TABLE leader ADD COLUMN previous_id TEXT NOT NULL DEFAULT '';
ALTER TABLE leader ADD COLUMN cause TEXT NOT NULL DEFAULT '';
