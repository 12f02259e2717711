-- Completion webhooks of a retried task: each final state a task reaches
-- gets its own delivery. round counts the final states of the task whose
-- callback this is (1 until an operator retries a finished task); the
-- delivery id carries it from round 2 on ("<task>:<state>:<round>").
ALTER TABLE webhook_callbacks ADD COLUMN round integer NOT NULL DEFAULT 1;
CREATE INDEX webhook_deliveries_task ON webhook_deliveries (task_id);
