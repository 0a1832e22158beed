-- Records failed attempts, fenced like completions. A step with retries left
-- (the handler says retryable, the step is retryable, and fewer than
-- retry_limit attempts were spent since the last manual retry) goes
-- in_progress → error → pending in this one transaction and runs again at
-- now() + its backoff; otherwise it rests in error, failed for good.
-- $2 maps each step id (text) to [attempt, error, retryable, delay in ms].
-- Rows are found and locked as in steps_complete.sql: by the primary key's
-- scan of the id array, in id order, each locked by being updated. In SET,
-- w is the row before the update.
WITH failed AS (
  UPDATE workflow_steps w
  -- The row's inputs are looked up once, and whether it retries decided
  -- once.
  SET (status, last_error, runnable_at, processed_at) = (
        SELECT CASE WHEN r.retry THEN 'pending' ELSE 'error' END, r.v -> 1,
               CASE WHEN r.retry THEN now() + (r.v ->> 3)::bigint * interval '1 millisecond' END,
               CASE WHEN r.retry THEN NULL ELSE now() END
        FROM (SELECT v, (v ->> 2)::bool AND w.retryable AND w.attempts - w.retry_base < w.retry_limit AS retry
              FROM (SELECT $2::jsonb -> w.workflow_step_id::text AS v) v) r),
      lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
  WHERE w.workflow_step_id = ANY ($1::uuid[]) AND w.status || '' = 'in_progress' -- || '': see steps_complete.sql
    AND w.attempts = ($2::jsonb -> w.workflow_step_id::text ->> 0)::int
  RETURNING w.workflow_step_id, w.task_id, w.attempts, w.status = 'pending' AS will_retry, w.runnable_at, w.last_error AS err
), transitions AS (
  INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, metadata)
  SELECT workflow_step_id, task_id, 'in_progress', 'error',
         jsonb_build_object('attempt', attempts, 'replica', $3::text, 'error', err, 'will_retry', will_retry)
  FROM failed
  UNION ALL
  SELECT workflow_step_id, task_id, 'error', 'pending',
         jsonb_build_object('attempt', attempts, 'reason', 'retry', 'retry_at', runnable_at)
  FROM failed WHERE will_retry
)
SELECT workflow_step_id, task_id, attempts, will_retry, runnable_at FROM failed
