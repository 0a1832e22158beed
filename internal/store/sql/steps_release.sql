-- A stopping replica hands back steps whose handlers did not finish:
-- in_progress → pending (reason released), claimable at once elsewhere. The
-- attempt is given back to the budget (retry_base + 1): stopping is not the
-- step's failure.
WITH released AS (
  UPDATE workflow_steps w
  SET status = 'pending', runnable_at = now(), retry_base = w.retry_base + 1,
      lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
  FROM unnest($1::uuid[], $2::int[]) AS i(id, attempt)
  WHERE w.workflow_step_id = i.id AND w.attempts = i.attempt AND w.status = 'in_progress' AND w.lease_owner = $3
  RETURNING w.workflow_step_id, w.task_id, w.attempts
), transitions AS (
  INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, metadata)
  SELECT workflow_step_id, task_id, 'in_progress', 'pending',
         jsonb_build_object('reason', 'released', 'attempt', attempts, 'replica', $3::text)
  FROM released
)
SELECT count(*), (SELECT count(*) FROM (SELECT pg_notify($4, '') WHERE EXISTS (SELECT 1 FROM released)) n) FROM released
