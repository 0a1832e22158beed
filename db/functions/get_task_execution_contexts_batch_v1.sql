-- Tasker's get_task_execution_contexts_batch(): for each given task, its step
-- counts by state, how many steps are ready, and a verdict on what the task
-- is doing and what should happen next. Ids of tasks that do not exist are
-- ignored; each task appears once however often its id is given.
--
-- It exists for analysis, the API's task views and as a test oracle; like
-- get_step_readiness_status_batch(), on which it is built (installed first),
-- it derives everything from the steps and the DAG, O(task size), and is not
-- on the engine's hot path.
--
-- Counts: completed_steps = complete + resolved_manually; failed_steps =
-- status error (a step rests in error only when it failed for good);
-- ready_steps = steps with ready_for_execution.
--
-- execution_status, the first that applies:
--   all_complete              every step is complete or resolved_manually
--                             (vacuously true for a task without steps)
--   has_ready_steps           ready_steps > 0
--   processing                in_progress_steps > 0
--   blocked_by_failures       failed_steps > 0 (nothing is ready or running)
--   waiting_for_dependencies  otherwise: steps wait for parents or sit in
--                             backoff. Cancelled steps with nothing failed
--                             land here too.
-- recommended_action follows execution_status one to one:
--   all_complete → finalize_task, has_ready_steps → execute_ready_steps,
--   processing → wait_for_completion, blocked_by_failures → handle_failures,
--   waiting_for_dependencies → wait_for_dependencies.
-- completion_percentage = 100 * completed_steps / total_steps, two decimals
-- (100.00 for a task without steps).
-- health_status, the first that applies:
--   unknown     the task has no steps, so there is nothing to judge
--   blocked     execution_status is blocked_by_failures
--   recovering  some step is pending with a last_error (retrying)
--   healthy     otherwise
-- Rows come ordered by task_id.
CREATE OR REPLACE FUNCTION get_task_execution_contexts_batch(input_task_ids uuid[])
RETURNS TABLE (
  task_id               uuid,
  total_steps           bigint,
  pending_steps         bigint,
  in_progress_steps     bigint,
  completed_steps       bigint,
  failed_steps          bigint,
  cancelled_steps       bigint,
  ready_steps           bigint,
  execution_status      text,
  recommended_action    text,
  completion_percentage numeric(5,2),
  health_status         text
)
LANGUAGE sql STABLE
AS $$
  -- Per task, a LATERAL over that task's steps: linear in the steps of the
  -- tasks asked for, with no join between two derived sets that the planner
  -- could turn into a quadratic nested loop on a large task.
  SELECT t.task_id,
         c.total,
         c.pending,
         c.in_progress,
         c.completed,
         c.failed,
         c.cancelled,
         c.ready,
         v.status,
         CASE v.status
           WHEN 'all_complete' THEN 'finalize_task'
           WHEN 'has_ready_steps' THEN 'execute_ready_steps'
           WHEN 'processing' THEN 'wait_for_completion'
           WHEN 'blocked_by_failures' THEN 'handle_failures'
           ELSE 'wait_for_dependencies'
         END,
         CASE WHEN c.total = 0 THEN 100
              ELSE round(100.0 * c.completed / c.total, 2)
         END::numeric(5,2),
         CASE
           WHEN c.total = 0 THEN 'unknown'
           WHEN v.status = 'blocked_by_failures' THEN 'blocked'
           WHEN rt.retrying > 0 THEN 'recovering'
           ELSE 'healthy'
         END
  FROM tasks t
  CROSS JOIN LATERAL (
    SELECT count(*) AS total,
           count(*) FILTER (WHERE r.current_state = 'pending') AS pending,
           count(*) FILTER (WHERE r.current_state = 'in_progress') AS in_progress,
           count(*) FILTER (WHERE r.current_state IN ('complete', 'resolved_manually')) AS completed,
           count(*) FILTER (WHERE r.current_state = 'error') AS failed,
           count(*) FILTER (WHERE r.current_state = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE r.ready_for_execution) AS ready
    FROM get_step_readiness_status_batch(ARRAY[t.task_id]) r
  ) c
  CROSS JOIN LATERAL (
    SELECT count(*) AS retrying
    FROM workflow_steps ws
    WHERE ws.task_id = t.task_id AND ws.status = 'pending' AND ws.last_error IS NOT NULL
  ) rt
  CROSS JOIN LATERAL (
    SELECT CASE
             WHEN c.completed = c.total THEN 'all_complete'
             WHEN c.ready > 0 THEN 'has_ready_steps'
             WHEN c.in_progress > 0 THEN 'processing'
             WHEN c.failed > 0 THEN 'blocked_by_failures'
             ELSE 'waiting_for_dependencies'
           END AS status
  ) v
  WHERE t.task_id = ANY (input_task_ids)
  ORDER BY t.task_id
$$;
