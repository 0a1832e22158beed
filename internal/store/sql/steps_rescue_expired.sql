-- Steps whose lease expired (their replica died or stalled) are taken back:
-- in_progress → pending (reason lease_expired), claimable at once by any
-- replica, or in_progress → error when that was the last attempt allowed.
-- The expired attempt counts: a step that kills its replica every time must
-- not loop forever. SKIP LOCKED lets replicas rescue concurrently.
WITH expired AS (
  SELECT w.workflow_step_id, w.lease_owner AS owner,
         (w.retryable AND w.attempts - w.retry_base < w.retry_limit) AS will_retry
  FROM workflow_steps w
  WHERE w.status = 'in_progress' AND w.lease_expires_at < now()
  ORDER BY w.workflow_step_id
  LIMIT $1
  FOR UPDATE SKIP LOCKED
), rescued AS (
  UPDATE workflow_steps w
  SET status = CASE WHEN e.will_retry THEN 'pending' ELSE 'error' END,
      runnable_at = CASE WHEN e.will_retry THEN now() END,
      last_error = CASE WHEN e.will_retry THEN w.last_error
                        ELSE jsonb_build_object('message', 'lease expired on the last attempt allowed', 'replica', e.owner) END,
      processed_at = CASE WHEN e.will_retry THEN NULL ELSE now() END,
      lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
  FROM expired e
  WHERE w.workflow_step_id = e.workflow_step_id
  RETURNING w.workflow_step_id, w.task_id, w.attempts, e.will_retry, e.owner
), transitions AS (
  INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, metadata)
  SELECT workflow_step_id, task_id, 'in_progress', CASE WHEN will_retry THEN 'pending' ELSE 'error' END,
         jsonb_build_object('reason', 'lease_expired', 'attempt', attempts, 'replica', owner, 'rescued_by', $2::text)
  FROM rescued
)
SELECT workflow_step_id, task_id, attempts, will_retry FROM rescued
