-- get_blocking_steps(): the steps that hold up the most work right now. In
-- each unfinished task (pending, in_progress or error) created since
-- since_timestamp, a blocking step is one that is not finished (pending,
-- in_progress, error or cancelled) although all its parents are: it stands
-- at the front of the task's progress, and every pending step downstream of
-- it (transitively) waits on it. Grouped by step template (namespace, task
-- name, version, step name), optionally of one namespace, task name and
-- version (NULL: any):
--   tasks_blocked       tasks in which this step blocks something
--   dependents_blocked  pending steps downstream of it, over those tasks
--   max_dependents      the most held up in one task
--   failed, running, waiting, cancelled  the blocking steps by state
-- Only steps with at least one pending dependent count. Ordered by
-- dependents_blocked, most first.
--
-- The recursive walk keeps each (blocking step, descendant) pair once
-- (UNION), so its cost is the size of the downstream sets, not the number
-- of paths.
CREATE OR REPLACE FUNCTION get_blocking_steps(
  since_timestamp  timestamptz,
  limit_count      integer DEFAULT 10,
  namespace_filter text DEFAULT NULL,
  task_name_filter text DEFAULT NULL,
  version_filter   text DEFAULT NULL
)
RETURNS TABLE (
  namespace_name     text,
  task_name          text,
  task_version       text,
  step_name          text,
  tasks_blocked      bigint,
  dependents_blocked bigint,
  max_dependents     bigint,
  failed             bigint,
  running            bigint,
  waiting            bigint,
  cancelled          bigint
)
LANGUAGE sql STABLE
AS $$
  WITH RECURSIVE front AS (
    SELECT ws.workflow_step_id, ws.task_id, ws.name, ws.status, t.namespace_name, t.task_name, t.task_version
    FROM tasks t
    JOIN workflow_steps ws ON ws.task_id = t.task_id
    WHERE t.status IN ('pending', 'in_progress', 'error') AND t.created_at >= since_timestamp
      AND (namespace_filter IS NULL OR t.namespace_name = namespace_filter)
      AND (task_name_filter IS NULL OR t.task_name = task_name_filter)
      AND (version_filter IS NULL OR t.task_version = version_filter)
      AND ws.status IN ('pending', 'in_progress', 'error', 'cancelled')
      AND NOT EXISTS (
        SELECT 1
        FROM workflow_step_edges e
        JOIN workflow_steps p ON p.workflow_step_id = e.from_step_id
        WHERE e.to_step_id = ws.workflow_step_id AND p.status NOT IN ('complete', 'resolved_manually'))
  ), downstream (root, step_id) AS (
    SELECT f.workflow_step_id, e.to_step_id
    FROM front f
    JOIN workflow_step_edges e ON e.from_step_id = f.workflow_step_id
    UNION
    SELECT d.root, e.to_step_id
    FROM downstream d
    JOIN workflow_step_edges e ON e.from_step_id = d.step_id
  ), held AS (
    SELECT d.root, count(*) AS dependents
    FROM downstream d
    JOIN workflow_steps ws ON ws.workflow_step_id = d.step_id
    WHERE ws.status = 'pending'
    GROUP BY d.root
  )
  SELECT f.namespace_name, f.task_name, f.task_version, f.name,
         count(DISTINCT f.task_id),
         sum(h.dependents)::bigint AS dependents_blocked,
         max(h.dependents),
         count(*) FILTER (WHERE f.status = 'error'),
         count(*) FILTER (WHERE f.status = 'in_progress'),
         count(*) FILTER (WHERE f.status = 'pending'),
         count(*) FILTER (WHERE f.status = 'cancelled')
  FROM front f
  JOIN held h ON h.root = f.workflow_step_id
  GROUP BY f.namespace_name, f.task_name, f.task_version, f.name
  ORDER BY dependents_blocked DESC, 1, 2, 3, 4
  LIMIT limit_count
$$;
