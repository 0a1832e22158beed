-- Remote workers and subtasks.
--
-- Remote workers claim steps of queues named "remote:<name>" over the API;
-- the workers table only remembers who was seen lately and what they
-- serve, for GET /tasker/workers. Which steps a worker holds is read from
-- workflow_steps (lease_owner), never copied here.
--
-- A subtask step starts a child task and waits for it without holding a
-- slot or a lease. The child's row names its parent task and step; the
-- child's finalisation completes (or fails) the parent step in the same
-- transaction.

-- +goose Up
CREATE TABLE workers (
  worker_id     text PRIMARY KEY CHECK (worker_id <> '' AND length(worker_id) <= 128),
  -- The queues the worker claimed from last ("remote:refunds", …).
  handlers      text[] NOT NULL DEFAULT '{}',
  first_seen_at timestamptz NOT NULL DEFAULT now(),
  last_seen_at  timestamptz NOT NULL DEFAULT now(),
  -- The replica that served its last claim.
  last_replica  text
) WITH (fillfactor = 70); -- last_seen_at moves with every claim and heartbeat

CREATE INDEX workers_last_seen ON workers (last_seen_at);

-- No foreign keys: their triggers would run on every update of tasks and
-- workflow_steps, the engine's hottest rows, and only the subtask kind
-- writes these columns.
ALTER TABLE tasks
  ADD COLUMN parent_task_id uuid,
  ADD COLUMN parent_step_id uuid,
  -- How long the parent step waits before its next attempt when this
  -- child ends in error (the parent step's backoff, computed when it
  -- started waiting).
  ADD COLUMN parent_retry_delay_ms bigint;

-- One child per subtask step, whatever its retries: the kind looks the
-- child up by its step, and the index makes a second child impossible.
CREATE UNIQUE INDEX tasks_parent_step ON tasks (parent_step_id) WHERE parent_step_id IS NOT NULL;
-- Children of a task, for links and for cancelling them with it.
CREATE INDEX tasks_parent_task ON tasks (parent_task_id) WHERE parent_task_id IS NOT NULL;

-- +goose Down
DROP INDEX IF EXISTS tasks_parent_task;
DROP INDEX IF EXISTS tasks_parent_step;
ALTER TABLE tasks
  DROP COLUMN IF EXISTS parent_retry_delay_ms,
  DROP COLUMN IF EXISTS parent_step_id,
  DROP COLUMN IF EXISTS parent_task_id;
DROP TABLE IF EXISTS workers;
