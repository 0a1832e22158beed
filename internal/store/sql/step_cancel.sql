-- Cancels one (locked) step by hand; its dependents will never run.
WITH cancelled AS (
  UPDATE workflow_steps
  SET status = 'cancelled', runnable_at = NULL, lease_owner = NULL, lease_expires_at = NULL,
      processed_at = now(), updated_at = now()
  WHERE workflow_step_id = $1 AND status = $2
  RETURNING workflow_step_id, task_id
)
INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, metadata, actor)
SELECT workflow_step_id, task_id, $2, 'cancelled', $3::jsonb, $4 FROM cancelled
RETURNING workflow_step_id
