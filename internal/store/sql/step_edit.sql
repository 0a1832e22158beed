-- Changes a step's retry limit ($3, when not NULL) and inputs ($5, when $4)
-- for PATCH /tasker/tasks/{task_id}/workflow_steps/{step_id}, in one
-- statement so the checks and the change see the same row:
--   * a running step (in_progress) is left alone: its handler already has
--     the inputs, and its attempt is counted against the old limit;
--   * a pending step that has spent attempts keeps at least one more: a
--     limit at or below what it spent would leave it scheduled yet out of
--     budget (cancel it instead).
-- The row is locked, so an engine claim or completion waits for the change
-- or happens before it. No row when the step is not the task's; otherwise
-- its status, attempts spent since the last manual retry, and whether it
-- changed.
WITH target AS (
  SELECT w.workflow_step_id, w.status, w.attempts - w.retry_base AS spent
  FROM workflow_steps w
  WHERE w.workflow_step_id = $2 AND w.task_id = $1
  FOR UPDATE
), changed AS (
  UPDATE workflow_steps w
  SET retry_limit = coalesce($3::integer, w.retry_limit),
      inputs = CASE WHEN $4 THEN $5::jsonb ELSE w.inputs END,
      updated_at = now()
  FROM target t
  WHERE w.workflow_step_id = t.workflow_step_id
    AND t.status <> 'in_progress'
    AND NOT (t.status = 'pending' AND t.spent > 0 AND $3::integer IS NOT NULL AND $3::integer <= t.spent)
  RETURNING w.workflow_step_id
)
SELECT t.status, t.spent, EXISTS (SELECT 1 FROM changed)
FROM target t
