-- Of tasks with failed steps, those where nothing can run any more: no step
-- running, none runnable now or after its backoff. Only tasks with failures
-- are asked, so this scan of a task's steps stays off the happy path.
SELECT t.id
FROM unnest($1::uuid[]) AS t(id)
WHERE NOT EXISTS (
  SELECT 1 FROM workflow_steps w
  WHERE w.task_id = t.id
    AND (w.status = 'in_progress' OR (w.status = 'pending' AND w.unfinished_parents = 0))
)
