-- Resolves a (locked) pending or failed step by hand: it counts as done for
-- its children, with the results given (if any).
WITH resolved AS (
  UPDATE workflow_steps
  SET status = 'resolved_manually', results = coalesce($3::jsonb, results), runnable_at = NULL,
      processed_at = now(), updated_at = now()
  WHERE workflow_step_id = $1 AND status = $2
  RETURNING workflow_step_id, task_id, attempts
)
INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, metadata, actor)
SELECT workflow_step_id, task_id, $2, 'resolved_manually', $4::jsonb, $5 FROM resolved
RETURNING workflow_step_id
