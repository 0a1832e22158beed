-- Pausing templates, concurrency limits and rate limits.
--
-- A step that may not run yet although it is ready is *parked*: pending,
-- runnable_at NULL (so it is out of the ready index and no claim ever scans
-- it again), and `parked` says why:
--   paused      its namespace or template is paused; resume unparks it.
--   limit       its step concurrency key has no free slot; a step of the
--               same key leaving in_progress unparks the oldest one.
--   task_limit  its task waits for a task concurrency slot; a task of the
--               same key finishing admits the oldest waiting task.
-- parked_at keeps the time the step became ready: waiting steps start in
-- that order (FIFO), and it becomes their runnable_at again when unparked.
--
-- Every new column is nullable and NULL for templates without limits, so
-- steps without a limit pay nothing: the claim only looks further at a
-- candidate whose limit_key or rate_key is set, or when a pause exists.

-- +goose Up
CREATE TABLE handler_pauses (
  namespace_name text NOT NULL,
  -- '' pauses the whole namespace; otherwise every version of the template.
  task_name      text NOT NULL DEFAULT '',
  paused_at      timestamptz NOT NULL DEFAULT now(),
  paused_by      text,
  PRIMARY KEY (namespace_name, task_name)
);

-- One row per concurrency key: how many holders it has now. The row lock
-- orders the claims and finishes of one key across replicas.
CREATE TABLE concurrency_slots (
  limit_key text PRIMARY KEY,
  running   integer NOT NULL DEFAULT 0 CHECK (running >= 0)
);

-- A token bucket per rate key (holding at most one token: steps of a key
-- start at least 1/per_second apart, never in a burst).
CREATE TABLE rate_buckets (
  rate_key    text PRIMARY KEY,
  tokens      float8 NOT NULL DEFAULT 1,
  refilled_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

ALTER TABLE workflow_steps
  ADD COLUMN parked text CHECK (parked IN ('paused', 'limit', 'task_limit')),
  ADD COLUMN parked_at timestamptz,
  ADD COLUMN limit_key text,
  ADD COLUMN limit_max integer CHECK (limit_max > 0),
  ADD COLUMN rate_key text,
  ADD COLUMN rate_per_second float8 CHECK (rate_per_second > 0);
ALTER TABLE workflow_steps_archive
  ADD COLUMN parked text,
  ADD COLUMN parked_at timestamptz,
  ADD COLUMN limit_key text,
  ADD COLUMN limit_max integer,
  ADD COLUMN rate_key text,
  ADD COLUMN rate_per_second float8;

-- limit_state: 'admitted' holds a slot of limit_key, 'waiting' queues for one.
ALTER TABLE tasks
  ADD COLUMN limit_key text,
  ADD COLUMN limit_max integer CHECK (limit_max > 0),
  ADD COLUMN limit_state text CHECK (limit_state IN ('admitted', 'waiting'));
ALTER TABLE tasks_archive
  ADD COLUMN limit_key text,
  ADD COLUMN limit_max integer,
  ADD COLUMN limit_state text;

-- Waiting steps of a key in FIFO order; every parked step by task (resume
-- finds a template's, the leader's gauges count them all).
-- A parked step that is cancelled keeps its marker (the cancelling
-- statements need not know of it) but leaves these indexes.
CREATE INDEX workflow_steps_parked_limit ON workflow_steps (limit_key, parked_at, workflow_step_id)
  WHERE parked = 'limit' AND status = 'pending';
CREATE INDEX workflow_steps_parked ON workflow_steps (task_id)
  WHERE parked IS NOT NULL AND status = 'pending';
CREATE INDEX tasks_limit_waiting ON tasks (limit_key, task_id)
  WHERE limit_state = 'waiting' AND status = 'pending';

-- A limited step leaving in_progress (complete, failed, released, rescued,
-- cancelled: whatever statement did it) frees its slot, and the oldest
-- step waiting on the key becomes runnable. So does a runnable one that is
-- cancelled or resolved before it ran: it may be the one a freed slot
-- woke, and the next in line must not wait for a slot that is free. A trigger rather than a line
-- in each of those statements so that no path can leak a slot; its WHEN
-- clause is checked without calling the function, so unlimited steps pay
-- nothing.
-- +goose StatementBegin
CREATE FUNCTION free_step_slot() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status = 'in_progress' THEN
    UPDATE concurrency_slots SET running = greatest(running - 1, 0) WHERE limit_key = OLD.limit_key;
  END IF;
  UPDATE workflow_steps w
  SET parked = NULL, runnable_at = least(w.parked_at, now()), parked_at = NULL, updated_at = now()
  FROM (SELECT workflow_step_id FROM workflow_steps
        WHERE limit_key = OLD.limit_key AND parked = 'limit' AND status = 'pending'
        ORDER BY parked_at, workflow_step_id LIMIT 1 FOR UPDATE SKIP LOCKED) n
  WHERE w.workflow_step_id = n.workflow_step_id;
  IF FOUND THEN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_steps', '');
  END IF;
  RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER workflow_steps_free_slot AFTER UPDATE ON workflow_steps FOR EACH ROW
  WHEN (OLD.limit_key IS NOT NULL AND
        ((OLD.status = 'in_progress' AND NEW.status <> 'in_progress') OR
         (OLD.status = 'pending' AND OLD.runnable_at IS NOT NULL AND NEW.status NOT IN ('pending', 'in_progress'))))
  EXECUTE FUNCTION free_step_slot();

-- Task concurrency: a task with a limit key is admitted when it is created
-- if its key has a free slot, else it waits with its runnable steps parked
-- (task_limit). Running after the creating statement, the trigger sees the
-- task's steps inserted by the same statement.
-- +goose StatementBegin
CREATE FUNCTION admit_task() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE TRIGGER tasks_admit AFTER INSERT ON tasks FOR EACH ROW
  WHEN (NEW.limit_key IS NOT NULL)
  EXECUTE FUNCTION admit_task();

-- An admitted task reaching a final state frees its slot and admits the
-- oldest waiting task of its key (task ids are UUIDv7: creation order); a
-- waiting task that is cancelled simply leaves the queue. A manual retry of an admitted task takes its
-- slot back even beyond the limit: it was admitted once.
-- +goose StatementBegin
CREATE FUNCTION free_task_slot() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  next uuid;
BEGIN
  IF NEW.status IN ('pending', 'in_progress') THEN
    UPDATE concurrency_slots SET running = running + 1 WHERE limit_key = OLD.limit_key;
    RETURN NULL;
  END IF;
  UPDATE concurrency_slots SET running = greatest(running - 1, 0) WHERE limit_key = OLD.limit_key;
  SELECT task_id INTO next FROM tasks
  WHERE limit_key = OLD.limit_key AND limit_state = 'waiting' AND status = 'pending'
  ORDER BY task_id LIMIT 1 FOR UPDATE SKIP LOCKED;
  IF next IS NOT NULL THEN
    UPDATE concurrency_slots SET running = running + 1 WHERE limit_key = OLD.limit_key;
    UPDATE tasks SET limit_state = 'admitted' WHERE task_id = next;
    UPDATE workflow_steps SET parked = NULL, runnable_at = parked_at, parked_at = NULL, updated_at = now()
    WHERE task_id = next AND parked = 'task_limit' AND status = 'pending';
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_steps', '');
  END IF;
  RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER tasks_free_slot AFTER UPDATE ON tasks FOR EACH ROW
  WHEN (OLD.limit_state = 'admitted' AND
        (OLD.status IN ('pending', 'in_progress')) <> (NEW.status IN ('pending', 'in_progress')))
  EXECUTE FUNCTION free_task_slot();

-- +goose Down
DROP TRIGGER tasks_free_slot ON tasks;
DROP FUNCTION free_task_slot();
DROP TRIGGER tasks_admit ON tasks;
DROP FUNCTION admit_task();
DROP TRIGGER workflow_steps_free_slot ON workflow_steps;
DROP FUNCTION free_step_slot();
ALTER TABLE tasks_archive DROP COLUMN limit_key, DROP COLUMN limit_max, DROP COLUMN limit_state;
ALTER TABLE tasks DROP COLUMN limit_key, DROP COLUMN limit_max, DROP COLUMN limit_state;
ALTER TABLE workflow_steps_archive DROP COLUMN parked, DROP COLUMN parked_at, DROP COLUMN limit_key,
  DROP COLUMN limit_max, DROP COLUMN rate_key, DROP COLUMN rate_per_second;
ALTER TABLE workflow_steps DROP COLUMN parked, DROP COLUMN parked_at, DROP COLUMN limit_key,
  DROP COLUMN limit_max, DROP COLUMN rate_key, DROP COLUMN rate_per_second;
DROP TABLE rate_buckets;
DROP TABLE concurrency_slots;
DROP TABLE handler_pauses;
