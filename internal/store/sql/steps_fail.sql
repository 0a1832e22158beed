-- Records failed attempts, fenced like completions. A step with retries left
-- (the handler says retryable, the step is retryable, and fewer than
-- retry_limit attempts were spent since the last manual retry) goes
-- in_progress → error → pending in this one transaction and runs again at
-- now() + its backoff; otherwise it rests in error, failed for good.
WITH i AS (
  SELECT * FROM unnest($1::uuid[], $2::int[], $3::jsonb[], $4::bool[], $5::bigint[])
    AS i(id, attempt, err, retryable, delay_ms)
), locked AS (
  SELECT w.workflow_step_id, i.err, i.delay_ms,
         (i.retryable AND w.retryable AND w.attempts - w.retry_base < w.retry_limit) AS will_retry
  -- Locked in id order: see steps_complete.sql.
  FROM (SELECT * FROM i ORDER BY id) i,
       LATERAL (SELECT * FROM workflow_steps w WHERE w.workflow_step_id = i.id OFFSET 0 FOR UPDATE) w -- OFFSET 0: see steps_complete.sql
  WHERE w.status = 'in_progress' AND w.attempts = i.attempt
), failed AS (
  UPDATE workflow_steps w
  SET status = CASE WHEN l.will_retry THEN 'pending' ELSE 'error' END,
      last_error = l.err,
      runnable_at = CASE WHEN l.will_retry THEN now() + l.delay_ms * interval '1 millisecond' END,
      processed_at = CASE WHEN l.will_retry THEN NULL ELSE now() END,
      lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
  FROM locked l -- not joined back to i: see steps_complete.sql
  WHERE w.workflow_step_id = l.workflow_step_id
  RETURNING w.workflow_step_id, w.task_id, w.attempts, l.will_retry, w.runnable_at, l.err
), transitions AS (
  INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, metadata)
  SELECT workflow_step_id, task_id, 'in_progress', 'error',
         jsonb_build_object('attempt', attempts, 'replica', $6::text, 'error', err, 'will_retry', will_retry)
  FROM failed
  UNION ALL
  SELECT workflow_step_id, task_id, 'error', 'pending',
         jsonb_build_object('attempt', attempts, 'reason', 'retry', 'retry_at', runnable_at)
  FROM failed WHERE will_retry
)
SELECT workflow_step_id, task_id, attempts, will_retry, runnable_at FROM failed
