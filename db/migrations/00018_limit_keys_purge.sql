-- Concurrency slots and rate buckets that nothing uses any more are purged.
--
-- Their keys are templates over the task's context (one per customer, say),
-- so without a purge both tables grow with every key ever used. The leader's
-- maintenance deletes a row that has not been used for an hour, holds no
-- slot (running = 0) and that no task or step refers to any more: retention
-- deleted them. A key used again later gets a fresh row, as its first use
-- did: a full bucket, a free slot.
--
-- used_at is when a task was last created with the key. The create
-- statement (and the admission trigger of task-level keys) bumps it with
-- ON CONFLICT DO UPDATE, which locks the row until the create commits. So a
-- purge that began before a create committed, and so cannot see the new
-- task's steps, waits for that lock and then finds used_at fresh when it
-- rechecks the row: it leaves the row alone. A purge that deleted the row
-- first makes the create wait, then insert a new row.

-- +goose Up
ALTER TABLE concurrency_slots ADD COLUMN used_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE rate_buckets ADD COLUMN used_at timestamptz NOT NULL DEFAULT now();

-- Whether anything still refers to a key (only rows with keys are indexed:
-- steps without limits pay nothing).
CREATE INDEX workflow_steps_limit_key ON workflow_steps (limit_key) WHERE limit_key IS NOT NULL;
CREATE INDEX workflow_steps_rate_key ON workflow_steps (rate_key) WHERE rate_key IS NOT NULL;
CREATE INDEX tasks_limit_key ON tasks (limit_key) WHERE limit_key IS NOT NULL;
-- The purge looks at the longest unused rows first.
CREATE INDEX concurrency_slots_used_at ON concurrency_slots (used_at);
CREATE INDEX rate_buckets_used_at ON rate_buckets (used_at);

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION admit_task() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  taken integer;
BEGIN
  INSERT INTO concurrency_slots (limit_key) VALUES (NEW.limit_key)
  ON CONFLICT (limit_key) DO UPDATE SET used_at = now();
  UPDATE concurrency_slots SET running = running + 1
  WHERE limit_key = NEW.limit_key AND running < NEW.limit_max
    -- FIFO: nobody may overtake tasks already waiting.
    AND NOT EXISTS (SELECT 1 FROM tasks
                    WHERE limit_key = NEW.limit_key AND limit_state = 'waiting' AND status = 'pending');
  GET DIAGNOSTICS taken = ROW_COUNT;
  IF taken = 1 THEN
    UPDATE tasks SET limit_state = 'admitted' WHERE task_id = NEW.task_id;
  ELSE
    UPDATE tasks SET limit_state = 'waiting' WHERE task_id = NEW.task_id;
    UPDATE workflow_steps SET parked = 'task_limit', parked_at = runnable_at, runnable_at = NULL
    WHERE task_id = NEW.task_id AND status = 'pending' AND runnable_at IS NOT NULL;
  END IF;
  RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION admit_task() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  taken integer;
BEGIN
  INSERT INTO concurrency_slots (limit_key) VALUES (NEW.limit_key) ON CONFLICT DO NOTHING;
  UPDATE concurrency_slots SET running = running + 1
  WHERE limit_key = NEW.limit_key AND running < NEW.limit_max
    -- FIFO: nobody may overtake tasks already waiting.
    AND NOT EXISTS (SELECT 1 FROM tasks
                    WHERE limit_key = NEW.limit_key AND limit_state = 'waiting' AND status = 'pending');
  GET DIAGNOSTICS taken = ROW_COUNT;
  IF taken = 1 THEN
    UPDATE tasks SET limit_state = 'admitted' WHERE task_id = NEW.task_id;
  ELSE
    UPDATE tasks SET limit_state = 'waiting' WHERE task_id = NEW.task_id;
    UPDATE workflow_steps SET parked = 'task_limit', parked_at = runnable_at, runnable_at = NULL
    WHERE task_id = NEW.task_id AND status = 'pending' AND runnable_at IS NOT NULL;
  END IF;
  RETURN NULL;
END
$$;
-- +goose StatementEnd
DROP INDEX rate_buckets_used_at;
DROP INDEX concurrency_slots_used_at;
DROP INDEX tasks_limit_key;
DROP INDEX workflow_steps_rate_key;
DROP INDEX workflow_steps_limit_key;
ALTER TABLE rate_buckets DROP COLUMN used_at;
ALTER TABLE concurrency_slots DROP COLUMN used_at;
