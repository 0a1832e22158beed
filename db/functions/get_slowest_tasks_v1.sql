-- Tasker's get_slowest_tasks(): the tasks that ran longest among those that
-- ended (complete or error) since since_timestamp, optionally of one
-- namespace, name and version (NULL: any). Duration is completed_at -
-- started_at in milliseconds, as in get_analytics_metrics(). Step counts come
-- from the task's own counters. Ties go to the older task id.
CREATE OR REPLACE FUNCTION get_slowest_tasks(
  since_timestamp  timestamptz,
  limit_count      integer DEFAULT 10,
  namespace_filter text DEFAULT NULL,
  task_name_filter text DEFAULT NULL,
  version_filter   text DEFAULT NULL
)
RETURNS TABLE (
  task_id        uuid,
  namespace_name text,
  task_name      text,
  task_version   text,
  status         text,
  duration_ms    double precision,
  total_steps    integer,
  failed_steps   integer,
  initiator      text,
  started_at     timestamptz,
  completed_at   timestamptz
)
LANGUAGE sql STABLE
AS $$
  SELECT t.task_id, t.namespace_name, t.task_name, t.task_version, t.status,
         (extract(epoch FROM t.completed_at - t.started_at) * 1000)::double precision AS duration_ms,
         t.total_steps, t.failed_steps, t.initiator, t.started_at, t.completed_at
  FROM tasks t
  WHERE t.status IN ('complete', 'error') AND t.completed_at >= since_timestamp AND t.started_at IS NOT NULL
    AND (namespace_filter IS NULL OR t.namespace_name = namespace_filter)
    AND (task_name_filter IS NULL OR t.task_name = task_name_filter)
    AND (version_filter IS NULL OR t.task_version = version_filter)
  ORDER BY duration_ms DESC, t.task_id
  LIMIT limit_count
$$;
