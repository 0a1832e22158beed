-- Tasker's get_step_readiness_status_batch() (v2: parked steps are not
-- ready, and say why): for every step of the given
-- tasks, whether it may run now and, when it may not, why.
--
-- It exists for analysis (why is this task stuck?), for the API's step and
-- dependency views, and as a test oracle: readiness is derived here from the
-- DAG and the step rows alone, never from the engine's own bookkeeping
-- (workflow_steps.unfinished_parents, the NULL-ness of runnable_at), so tests
-- can compare what the engine claims against an independent computation.
-- It reads every step and edge of the tasks, O(task size); it is not on the
-- engine's hot path, which claims from the workflow_steps_ready index.
--
-- Rules (the current state is the status column):
--   dependencies_satisfied: every parent (edge from_step_id → to_step_id) is
--       complete or resolved_manually; true for a root.
--   retry_eligible: retryable AND attempts - retry_base < retry_limit, i.e.
--       the step still has retry budget. It says nothing about whether the
--       step may run now: a fresh non-retryable step is not retry eligible
--       yet ready.
--   ready_for_execution: status = 'pending' AND dependencies_satisfied AND
--       (runnable_at IS NULL OR runnable_at <= now())
--       AND attempts - retry_base < retry_limit AND the step is not parked
--       (v2: migration 00013's pauses and concurrency limits park steps).
--   last_failure_at: created_at of the step's latest transition (highest id)
--       to 'error'. A failed attempt that will be retried passes through
--       error (in_progress → error → pending), so this is the last failed
--       attempt, retried or not.
--   next_retry_at: runnable_at when the step is pending, has a last_error and
--       runnable_at is in the future (waiting out a retry backoff).
--   blocked_reason: NULL when the step is ready or finished (complete,
--       resolved_manually); otherwise the first that applies of
--         'cancelled'                 status cancelled
--         'running'                   status in_progress
--         'retries_exhausted'         status error, retryable, and
--                                     attempts - retry_base >= retry_limit
--         'failed'                    status error otherwise (non-retryable,
--                                     or failed for good with budget left)
--         'retries_exhausted'         status pending with
--                                     attempts - retry_base >= retry_limit
--                                     (it can never be claimed, whatever its
--                                     parents do, so this comes first)
--         'waiting_for_dependencies'  status pending, a parent not finished
--         'paused'                    status pending, parked: its namespace
--                                     or template is paused (v2)
--         'concurrency_limit'         status pending, parked: its step
--                                     concurrency key has no free slot (v2)
--         'task_concurrency_limit'    status pending, parked: its task waits
--                                     for a task concurrency slot (v2)
--         'in_backoff'                status pending, runnable_at > now()
--                                     (a retry backoff, a rate limit's next
--                                     token, or any other delay)
-- Rows come ordered by task_id, workflow_step_id (creation order: UUIDv7).
CREATE OR REPLACE FUNCTION get_step_readiness_status_batch(input_task_ids uuid[])
RETURNS TABLE (
  workflow_step_id       uuid,
  task_id                uuid,
  name                   text,
  current_state          text,
  dependencies_satisfied boolean,
  retry_eligible         boolean,
  ready_for_execution    boolean,
  last_failure_at        timestamptz,
  next_retry_at          timestamptz,
  total_parents          integer,
  completed_parents      integer,
  attempts               integer,
  retry_limit            integer,
  blocked_reason         text
)
LANGUAGE sql STABLE
AS $$
  -- Every per-step lookup is a correlated LATERAL on an index (a step's
  -- parents by workflow_step_edges_to, their states by primary key, its
  -- transitions by their (step, id) key), so the cost is linear
  -- in the task's steps and edges whatever the planner estimates. Joining a
  -- grouped parent-count set to the steps instead lets the planner, which
  -- sizes every task like the average one, pick a nested loop that is
  -- quadratic in a large task.
  SELECT ws.workflow_step_id,
         ws.task_id,
         ws.name,
         ws.status,
         f.deps_ok,
         ws.retryable AND f.has_budget,
         ws.status = 'pending' AND f.deps_ok AND NOT f.deferred AND f.has_budget AND ws.parked IS NULL,
         lf.created_at,
         CASE WHEN ws.status = 'pending' AND ws.last_error IS NOT NULL AND f.deferred THEN ws.runnable_at END,
         pc.total::integer,
         pc.done::integer,
         ws.attempts,
         ws.retry_limit,
         CASE
           WHEN ws.status IN ('complete', 'resolved_manually') THEN NULL
           WHEN ws.status = 'cancelled' THEN 'cancelled'
           WHEN ws.status = 'in_progress' THEN 'running'
           WHEN ws.status = 'error' AND ws.retryable AND NOT f.has_budget THEN 'retries_exhausted'
           WHEN ws.status = 'error' THEN 'failed'
           WHEN NOT f.has_budget THEN 'retries_exhausted'
           WHEN NOT f.deps_ok THEN 'waiting_for_dependencies'
           WHEN ws.parked = 'paused' THEN 'paused'
           WHEN ws.parked = 'limit' THEN 'concurrency_limit'
           WHEN ws.parked = 'task_limit' THEN 'task_concurrency_limit'
           WHEN f.deferred THEN 'in_backoff'
         END
  FROM workflow_steps ws
  CROSS JOIN LATERAL (
    SELECT count(*) AS total,
           count(*) FILTER (WHERE p.status IN ('complete', 'resolved_manually')) AS done
    FROM workflow_step_edges e
    JOIN workflow_steps p ON p.workflow_step_id = e.from_step_id
    WHERE e.to_step_id = ws.workflow_step_id
  ) pc
  CROSS JOIN LATERAL (
    SELECT pc.done = pc.total AS deps_ok,
           ws.attempts - ws.retry_base < ws.retry_limit AS has_budget,
           coalesce(ws.runnable_at > now(), false) AS deferred
  ) f
  LEFT JOIN LATERAL (
    SELECT tr.created_at
    FROM workflow_step_transitions tr
    WHERE tr.workflow_step_id = ws.workflow_step_id AND tr.to_state = 'error'
    ORDER BY tr.workflow_step_transition_id DESC
    LIMIT 1
  ) lf ON true
  WHERE ws.task_id = ANY (input_task_ids)
  ORDER BY ws.task_id, ws.workflow_step_id
$$;
