-- Tasker's get_step_readiness_status(): the readiness of one task's steps,
-- optionally only those in step_ids (NULL means all; an empty array, none).
--
-- It exists for analysis, the API's step views and as a test oracle; the
-- rules live in one place, get_step_readiness_status_batch() (installed
-- first), so the single and batch forms cannot disagree. Being a one-SELECT
-- SQL function it is inlined by the planner. O(task size): the whole task is
-- evaluated and then filtered, because a step's readiness needs its parents.
CREATE OR REPLACE FUNCTION get_step_readiness_status(input_task_id uuid, step_ids uuid[] DEFAULT NULL)
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
  SELECT r.*
  FROM get_step_readiness_status_batch(ARRAY[input_task_id]) r
  WHERE step_ids IS NULL OR r.workflow_step_id = ANY (step_ids)
  ORDER BY r.workflow_step_id
$$;
