-- Cancels every unfinished step of a (locked) task, in id order, with
-- transitions; running handlers learn of it through NOTIFY and their late
-- results are fenced out by the status.
WITH locked AS (
  SELECT workflow_step_id, status AS from_state, attempts FROM workflow_steps
  WHERE task_id = $1 AND status IN ('pending', 'in_progress', 'error')
  ORDER BY workflow_step_id FOR UPDATE
), cancelled AS (
  UPDATE workflow_steps w
  SET status = 'cancelled', runnable_at = NULL, lease_owner = NULL, lease_expires_at = NULL,
      processed_at = now(), updated_at = now()
  FROM locked l WHERE w.workflow_step_id = l.workflow_step_id
  RETURNING w.workflow_step_id, w.task_id, l.from_state, w.attempts
), transitions AS (
  INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, metadata, actor)
  SELECT workflow_step_id, task_id, from_state, 'cancelled', $2::jsonb, $3 FROM cancelled
)
SELECT workflow_step_id, from_state, attempts FROM cancelled
