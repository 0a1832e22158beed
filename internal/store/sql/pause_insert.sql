-- Pauses a namespace ($2 = '') or every version of a template, and parks
-- the steps of its unfinished tasks that are runnable now or later (a
-- backoff or run_at in the future): they leave the ready queue, so claims
-- never scan them while the pause lasts. Steps that become runnable during
-- the pause are parked by the claim that first meets them. Running steps
-- finish. Pausing twice keeps the first pause.
WITH pause AS (
  INSERT INTO handler_pauses (namespace_name, task_name, paused_by)
  VALUES ($1, $2, $3)
  ON CONFLICT (namespace_name, task_name) DO NOTHING
), parked AS (
  UPDATE workflow_steps w
  SET parked = 'paused', parked_at = w.runnable_at, runnable_at = NULL, updated_at = now()
  FROM tasks t
  WHERE t.namespace_name = $1 AND ($2 = '' OR t.task_name = $2) AND t.status IN ('pending', 'in_progress')
    AND w.task_id = t.task_id AND w.status = 'pending' AND w.runnable_at IS NOT NULL
  RETURNING 1
)
SELECT count(*) FROM parked
