-- Tasker's get_system_health_counts(): one row of task and step counts by
-- state, retry figures and connection usage, for /tasker/health/status.
--   retryable_errors:  steps that failed an attempt and wait to run again
--   exhausted_retries: steps that failed for good with no attempts left
--   in_backoff:        pending steps whose next run time is in the future
-- It scans the tables, so callers cache its answer (Tasker: 15 s).
CREATE OR REPLACE FUNCTION get_system_health_counts()
RETURNS TABLE (
  total_tasks bigint,
  pending_tasks bigint,
  in_progress_tasks bigint,
  complete_tasks bigint,
  error_tasks bigint,
  cancelled_tasks bigint,
  resolved_manually_tasks bigint,
  total_steps bigint,
  pending_steps bigint,
  in_progress_steps bigint,
  complete_steps bigint,
  error_steps bigint,
  cancelled_steps bigint,
  resolved_manually_steps bigint,
  retryable_errors bigint,
  exhausted_retries bigint,
  in_backoff bigint,
  active_connections bigint,
  max_connections bigint
)
LANGUAGE sql STABLE
AS $$
  WITH task_counts AS (
    SELECT count(*) AS total,
           count(*) FILTER (WHERE status = 'pending') AS pending,
           count(*) FILTER (WHERE status = 'in_progress') AS in_progress,
           count(*) FILTER (WHERE status = 'complete') AS complete,
           count(*) FILTER (WHERE status = 'error') AS error,
           count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE status = 'resolved_manually') AS resolved_manually
    FROM tasks
  ), step_counts AS (
    SELECT count(*) AS total,
           count(*) FILTER (WHERE status = 'pending') AS pending,
           count(*) FILTER (WHERE status = 'in_progress') AS in_progress,
           count(*) FILTER (WHERE status = 'complete') AS complete,
           count(*) FILTER (WHERE status = 'error') AS error,
           count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE status = 'resolved_manually') AS resolved_manually,
           count(*) FILTER (WHERE status = 'pending' AND last_error IS NOT NULL) AS retryable_errors,
           count(*) FILTER (WHERE status = 'error' AND attempts - retry_base >= retry_limit) AS exhausted_retries,
           count(*) FILTER (WHERE status = 'pending' AND runnable_at > now()) AS in_backoff
    FROM workflow_steps
  ), conns AS (
    SELECT count(*) AS active
    FROM pg_stat_activity
    WHERE datname = current_database() AND state <> 'idle'
  )
  SELECT t.total, t.pending, t.in_progress, t.complete, t.error, t.cancelled, t.resolved_manually,
         s.total, s.pending, s.in_progress, s.complete, s.error, s.cancelled, s.resolved_manually,
         s.retryable_errors, s.exhausted_retries, s.in_backoff,
         c.active, current_setting('max_connections')::bigint
  FROM task_counts t, step_counts s, conns c
$$;
