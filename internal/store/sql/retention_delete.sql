-- Deletes up to $3 tasks that finished before now() - $2 ms with status in
-- $1, oldest first, with their steps and edges (foreign-key cascade) and
-- transitions (triggers of migration 00009). Rows a running action holds
-- are skipped (SKIP LOCKED), so retention never waits on the engine, and
-- each batch is its own short transaction. Subtasks go with their own
-- finish time, like any task.
WITH doomed AS (
  SELECT task_id FROM tasks
  WHERE status = ANY ($1::text[]) AND completed_at < now() - $2::bigint * interval '1 millisecond'
  ORDER BY completed_at
  LIMIT $3
  FOR UPDATE SKIP LOCKED
)
DELETE FROM tasks t USING doomed d WHERE t.task_id = d.task_id
