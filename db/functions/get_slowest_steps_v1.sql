-- Tasker's get_slowest_steps(): the step attempts that ran longest among the
-- steps that ended (complete or error) since since_timestamp, optionally of
-- one namespace, task name and version (NULL: any). Duration is processed_at
-- - last_attempted_at in milliseconds: the run time of the step's last
-- attempt, as in get_analytics_metrics(). Ties go to the older step id.
CREATE OR REPLACE FUNCTION get_slowest_steps(
  since_timestamp  timestamptz,
  limit_count      integer DEFAULT 10,
  namespace_filter text DEFAULT NULL,
  task_name_filter text DEFAULT NULL,
  version_filter   text DEFAULT NULL
)
RETURNS TABLE (
  workflow_step_id uuid,
  task_id          uuid,
  namespace_name   text,
  task_name        text,
  task_version     text,
  step_name        text,
  status           text,
  attempts         integer,
  duration_ms      double precision,
  processed_at     timestamptz
)
LANGUAGE sql STABLE
AS $$
  SELECT ws.workflow_step_id, ws.task_id, t.namespace_name, t.task_name, t.task_version, ws.name, ws.status,
         ws.attempts,
         (extract(epoch FROM ws.processed_at - ws.last_attempted_at) * 1000)::double precision AS duration_ms,
         ws.processed_at
  FROM workflow_steps ws
  JOIN tasks t ON t.task_id = ws.task_id
  WHERE ws.status IN ('complete', 'error') AND ws.processed_at >= since_timestamp
    AND ws.last_attempted_at IS NOT NULL
    AND (namespace_filter IS NULL OR t.namespace_name = namespace_filter)
    AND (task_name_filter IS NULL OR t.task_name = task_name_filter)
    AND (version_filter IS NULL OR t.task_version = version_filter)
  ORDER BY duration_ms DESC, ws.workflow_step_id
  LIMIT limit_count
$$;
