-- Tasker's get_analytics_metrics(), with real percentiles: task and step
-- throughput, completion and error rates, and average/p50/p95/p99 durations
-- since since_timestamp, for every namespace together (the row whose
-- namespace_name is NULL, always present) and for each namespace that had
-- activity. Tasker's version returned hard-coded percentiles; these are
-- percentile_cont, i.e. linear interpolation between the closest ranks.
--
-- Definitions (the window is [since_timestamp, now()]):
--   active_tasks     tasks pending or in_progress now (not windowed)
--   tasks_created    tasks created in the window
--   tasks_completed  tasks that completed in the window (status complete,
--                    completed_at in the window)
--   tasks_failed     tasks that failed in the window (status error,
--                    completed_at in the window)
--   completion_rate  tasks_completed / (tasks_completed + tasks_failed):
--                    of the tasks that ended in the window, the share that
--                    succeeded; 0 when none ended. error_rate likewise.
--   task_duration_*  completed_at - started_at of the completed tasks, in
--                    milliseconds: execution time, without the wait before
--                    the first claim
--   steps_completed  steps that completed in the window (processed_at)
--   step_failures    failed attempts in the window: step transitions to
--                    error, whether retried or not
--   step_error_rate  step_failures / (steps_completed + step_failures)
--   step_duration_*  processed_at - last_attempted_at of the completed
--                    steps: the run time of the attempt that succeeded
-- Durations are NULL when there is nothing to measure.
--
-- It scans tasks and steps (there is no index on completion times, and
-- adding one would cost every state change a non-HOT update), so the API
-- caches its answer. Failed attempts are found through the partial index
-- workflow_step_transitions_errors.
CREATE OR REPLACE FUNCTION get_analytics_metrics(since_timestamp timestamptz)
RETURNS TABLE (
  namespace_name       text,
  active_tasks         bigint,
  tasks_created        bigint,
  tasks_completed      bigint,
  tasks_failed         bigint,
  completion_rate      double precision,
  error_rate           double precision,
  task_duration_avg_ms double precision,
  task_duration_p50_ms double precision,
  task_duration_p95_ms double precision,
  task_duration_p99_ms double precision,
  steps_completed      bigint,
  step_failures        bigint,
  step_error_rate      double precision,
  step_duration_avg_ms double precision,
  step_duration_p50_ms double precision,
  step_duration_p95_ms double precision,
  step_duration_p99_ms double precision
)
LANGUAGE sql STABLE
AS $$
  WITH t AS (
    SELECT t.namespace_name, t.status, t.created_at, t.completed_at,
           CASE WHEN t.status = 'complete' AND t.completed_at >= since_timestamp AND t.started_at IS NOT NULL
                THEN (extract(epoch FROM t.completed_at - t.started_at) * 1000)::double precision
           END AS duration_ms
    FROM tasks t
    WHERE t.created_at >= since_timestamp OR t.completed_at >= since_timestamp
       OR t.status IN ('pending', 'in_progress')
  ), task_stats AS (
    -- GROUPING SETS: one pass yields the all-namespaces row ('*', never a
    -- namespace name) and one row per namespace.
    SELECT coalesce(t.namespace_name, '*') AS k,
           count(*) FILTER (WHERE t.status IN ('pending', 'in_progress')) AS active,
           count(*) FILTER (WHERE t.created_at >= since_timestamp) AS created,
           count(*) FILTER (WHERE t.status = 'complete' AND t.completed_at >= since_timestamp) AS completed,
           count(*) FILTER (WHERE t.status = 'error' AND t.completed_at >= since_timestamp) AS failed,
           avg(t.duration_ms) AS avg_ms,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY t.duration_ms) AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY t.duration_ms) AS p95,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY t.duration_ms) AS p99
    FROM t
    GROUP BY GROUPING SETS ((), (t.namespace_name))
  ), s AS (
    SELECT t.namespace_name,
           (extract(epoch FROM ws.processed_at - ws.last_attempted_at) * 1000)::double precision AS duration_ms
    FROM workflow_steps ws
    JOIN tasks t ON t.task_id = ws.task_id
    WHERE ws.status = 'complete' AND ws.processed_at >= since_timestamp AND ws.last_attempted_at IS NOT NULL
  ), step_stats AS (
    SELECT coalesce(s.namespace_name, '*') AS k,
           count(*) AS completed,
           avg(s.duration_ms) AS avg_ms,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY s.duration_ms) AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY s.duration_ms) AS p95,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY s.duration_ms) AS p99
    FROM s
    GROUP BY GROUPING SETS ((), (s.namespace_name))
  ), failure_stats AS (
    SELECT coalesce(t.namespace_name, '*') AS k, count(*) AS failures
    FROM workflow_step_transitions tr
    JOIN tasks t ON t.task_id = tr.task_id
    WHERE tr.to_state = 'error' AND tr.created_at >= since_timestamp
    GROUP BY GROUPING SETS ((), (t.namespace_name))
  )
  SELECT nullif(k, '*'),
         coalesce(ts.active, 0),
         coalesce(ts.created, 0),
         coalesce(ts.completed, 0),
         coalesce(ts.failed, 0),
         coalesce(ts.completed::double precision / nullif(ts.completed + ts.failed, 0), 0),
         coalesce(ts.failed::double precision / nullif(ts.completed + ts.failed, 0), 0),
         ts.avg_ms, ts.p50, ts.p95, ts.p99,
         coalesce(ss.completed, 0),
         coalesce(fs.failures, 0),
         coalesce(coalesce(fs.failures, 0)::double precision
                  / nullif(coalesce(ss.completed, 0) + coalesce(fs.failures, 0), 0), 0),
         ss.avg_ms, ss.p50, ss.p95, ss.p99
  FROM task_stats ts
  FULL JOIN step_stats ss USING (k)
  FULL JOIN failure_stats fs USING (k)
  ORDER BY nullif(k, '*') NULLS FIRST
$$;
