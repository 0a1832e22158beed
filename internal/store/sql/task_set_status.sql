-- Moves a locked task to a new status with its transition. A failed task
-- sent back to pending starts a new run.
WITH moved AS (
  UPDATE tasks SET status = $2,
    completed_at = CASE WHEN $2 IN ('complete', 'error', 'cancelled', 'resolved_manually') THEN now() ELSE NULL END,
    started_at = CASE WHEN $2 = 'in_progress' THEN coalesce(started_at, now()) ELSE started_at END,
    runs = CASE WHEN $3 = 'error' AND $2 = 'pending' THEN runs + 1 ELSE runs END,
    updated_at = now()
  WHERE task_id = $1 AND status = $3
  RETURNING task_id, runs
), logged AS (
  INSERT INTO task_transitions (task_id, from_state, to_state, metadata, actor)
  SELECT task_id, $3, $2, $4::jsonb, $5 FROM moved
)
SELECT task_id, runs FROM moved
