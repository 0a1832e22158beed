-- get_error_patterns(): what failed attempts since since_timestamp said,
-- grouped so that one cause is one row. The engine records a failed attempt
-- as a step transition to error whose metadata holds the error
-- ({"error": {"message": …}, "will_retry": …}). Messages are folded into a
-- pattern by replacing UUIDs with <uuid> and digit runs with N, so "timeout
-- after 3012 ms on order 42" and "… 2990 ms on order 7" are one pattern.
-- Tasker's version returned hard-coded error types; these come from the
-- recorded errors. One row per (namespace, task name, version, step name,
-- pattern):
--   occurrences     failed attempts
--   affected_steps  distinct steps that failed this way
--   retried         failed attempts that were retried
--   sample_message  one message as recorded (the smallest, for stability)
-- Ordered by occurrences, most first. The partial index
-- workflow_step_transitions_errors finds the failures without a scan.
CREATE OR REPLACE FUNCTION get_error_patterns(
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
  pattern        text,
  occurrences    bigint,
  affected_steps bigint,
  retried        bigint,
  first_seen_at  timestamptz,
  last_seen_at   timestamptz,
  sample_message text
)
LANGUAGE sql STABLE
AS $$
  WITH f AS (
    SELECT t.namespace_name, t.task_name, t.task_version, ws.name AS step_name, tr.workflow_step_id,
           tr.created_at,
           coalesce(tr.metadata -> 'error' ->> 'message', tr.metadata ->> 'reason', 'unknown') AS message,
           coalesce(tr.metadata -> 'will_retry' = 'true'::jsonb, false) AS will_retry
    FROM workflow_step_transitions tr
    JOIN workflow_steps ws ON ws.workflow_step_id = tr.workflow_step_id
    JOIN tasks t ON t.task_id = tr.task_id
    WHERE tr.to_state = 'error' AND tr.created_at >= since_timestamp
      AND (namespace_filter IS NULL OR t.namespace_name = namespace_filter)
      AND (task_name_filter IS NULL OR t.task_name = task_name_filter)
      AND (version_filter IS NULL OR t.task_version = version_filter)
  ), p AS (
    SELECT f.*,
           regexp_replace(
             regexp_replace(f.message, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'gi'),
             '[0-9]+', 'N', 'g') AS pattern
    FROM f
  )
  SELECT p.namespace_name, p.task_name, p.task_version, p.step_name, p.pattern,
         count(*) AS occurrences,
         count(DISTINCT p.workflow_step_id),
         count(*) FILTER (WHERE p.will_retry),
         min(p.created_at), max(p.created_at), min(p.message)
  FROM p
  GROUP BY p.namespace_name, p.task_name, p.task_version, p.step_name, p.pattern
  ORDER BY occurrences DESC, 1, 2, 3, 4, 5
  LIMIT limit_count
$$;
