-- get_most_retried_steps(): the step templates whose instances needed the
-- most retries, counted over the steps attempted since since_timestamp
-- (last_attempted_at), optionally of one namespace, task name and version
-- (NULL: any). One row per (namespace, task name, version, step name) that
-- had at least one retry:
--   executions       steps of that template attempted in the window
--   total_attempts   their attempts
--   retries          attempts beyond each step's first
--   max_attempts     the most attempts one step needed
--   exhausted        steps that rest in error (failed for good)
-- Ordered by retries, most first.
CREATE OR REPLACE FUNCTION get_most_retried_steps(
  since_timestamp  timestamptz,
  limit_count      integer DEFAULT 10,
  namespace_filter text DEFAULT NULL,
  task_name_filter text DEFAULT NULL,
  version_filter   text DEFAULT NULL
)
RETURNS TABLE (
  namespace_name text,
  task_name      text,
  task_version   text,
  step_name      text,
  executions     bigint,
  total_attempts bigint,
  retries        bigint,
  max_attempts   integer,
  exhausted      bigint
)
LANGUAGE sql STABLE
AS $$
  SELECT t.namespace_name, t.task_name, t.task_version, ws.name,
         count(*),
         sum(ws.attempts),
         sum(greatest(ws.attempts - 1, 0)) AS retries,
         max(ws.attempts),
         count(*) FILTER (WHERE ws.status = 'error')
  FROM workflow_steps ws
  JOIN tasks t ON t.task_id = ws.task_id
  WHERE ws.last_attempted_at >= since_timestamp
    AND (namespace_filter IS NULL OR t.namespace_name = namespace_filter)
    AND (task_name_filter IS NULL OR t.task_name = task_name_filter)
    AND (version_filter IS NULL OR t.task_version = version_filter)
  GROUP BY t.namespace_name, t.task_name, t.task_version, ws.name
  HAVING sum(greatest(ws.attempts - 1, 0)) > 0
  ORDER BY retries DESC, 1, 2, 3, 4
  LIMIT limit_count
$$;
