-- Puts failed steps back to pending with a fresh retry budget counted from
-- now (retry_base = attempts; attempt numbers keep growing). A step whose
-- parents are done is runnable at once. $1: the task; $2: one step or NULL
-- for all of the task's failed steps.
WITH locked AS (
  SELECT workflow_step_id FROM workflow_steps
  WHERE task_id = $1 AND status = 'error' AND ($2::uuid IS NULL OR workflow_step_id = $2)
  ORDER BY workflow_step_id FOR UPDATE
), retried AS (
  UPDATE workflow_steps w
  SET status = 'pending', retry_base = w.attempts, processed_at = NULL,
      runnable_at = CASE WHEN w.unfinished_parents = 0 THEN now() END, updated_at = now()
  FROM locked l WHERE w.workflow_step_id = l.workflow_step_id
  RETURNING w.workflow_step_id, w.task_id, w.attempts
), transitions AS (
  INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, metadata, actor)
  SELECT workflow_step_id, task_id, 'error', 'pending', $3::jsonb, $4 FROM retried
), counted AS (
  UPDATE tasks SET failed_steps = failed_steps - (SELECT count(*) FROM retried),
                   unfinished_steps = unfinished_steps + (SELECT count(*) FROM retried), updated_at = now()
  WHERE task_id = $1 AND EXISTS (SELECT 1 FROM retried)
)
SELECT workflow_step_id, attempts, (SELECT count(*) FROM (SELECT pg_notify($5, '') WHERE EXISTS (SELECT 1 FROM retried)) n)
FROM retried
