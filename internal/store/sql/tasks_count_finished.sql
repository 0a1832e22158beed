-- Counts finished steps on their tasks: finalisation is a counter reaching
-- zero under the task row's lock, so when replicas finish a task's last
-- steps at the same time exactly one of them sees zero. Rows are updated,
-- and so locked, in id order (see steps_complete.sql for how): the input
-- comes from a Go map.
WITH i AS (
  SELECT * FROM unnest($1::uuid[], $2::int[], $3::int[]) AS i(task_id, done, failed) ORDER BY task_id
)
UPDATE tasks t
SET unfinished_steps = t.unfinished_steps - i.done,
    failed_steps = t.failed_steps + i.failed,
    updated_at = now()
FROM i
WHERE t.task_id = i.task_id
RETURNING t.task_id, t.status, t.unfinished_steps, t.failed_steps
