-- Moves finished tasks from in_progress to complete or error, with their
-- transitions. The status condition makes it idempotent. runs tells a
-- retried task's later finalisations from its first.
WITH i AS (
  SELECT * FROM unnest($1::uuid[], $2::text[]) AS i(task_id, to_state)
), finalized AS (
  UPDATE tasks t
  SET status = i.to_state, completed_at = now(), updated_at = now()
  FROM i
  WHERE t.task_id = i.task_id AND t.status = 'in_progress'
  RETURNING t.task_id, t.status, t.runs
), logged AS (
  INSERT INTO task_transitions (task_id, from_state, to_state, metadata, actor)
  SELECT task_id, 'in_progress', status, $3::jsonb, $4 FROM finalized
)
SELECT task_id, status, runs FROM finalized
