-- Tasker's get_task_execution_context(): step counts, execution status,
-- recommended action, completion and health of one task; no row when the
-- task does not exist.
--
-- It exists for analysis, the API's task view and as a test oracle. The rules
-- live in get_task_execution_contexts_batch() (installed first, where they
-- are written out), so the single and batch forms cannot disagree.
-- O(task size), never on the engine's hot path.
CREATE OR REPLACE FUNCTION get_task_execution_context(input_task_id uuid)
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
  SELECT c.* FROM get_task_execution_contexts_batch(ARRAY[input_task_id]) c
$$;
