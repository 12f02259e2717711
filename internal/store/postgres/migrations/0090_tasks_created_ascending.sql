-- tasks_created in ascending key order, as on SQLite. TaskList's
-- ORDER BY created_at DESC, id DESC (and its keyset condition) reads it
-- backward, with the same plan as before. Built descending, every new task
-- (the newest key) went to the index's leftmost leaf: each insert descended
-- from the root, and those leaves split in half, so the index ended half
-- empty (100,000 bulk-submitted tasks: 7.2 MB against 4.0 MB, 5 % more WAL,
-- and most of the SPLIT_L records). Ascending, the newest key is the
-- rightmost one: inserts take the cached rightmost-leaf path and full
-- leaves split 90/10.
DROP INDEX tasks_created;
CREATE INDEX tasks_created ON tasks (created_at, id);
