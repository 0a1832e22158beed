-- Counts finished steps on their tasks: finalisation is a counter reaching
-- zero under the task row's lock, so when replicas finish a task's last
-- steps at the same time exactly one of them sees zero. Rows are locked in
-- id order (see steps_complete.sql for how): the input comes from a Go map.
WITH i AS (
  SELECT * FROM unnest($1::uuid[], $2::int[], $3::int[]) AS i(task_id, done, failed)
), locked AS (
  SELECT t.task_id, i.done, i.failed
  FROM (SELECT * FROM i ORDER BY task_id) i,
       LATERAL (SELECT * FROM tasks t WHERE t.task_id = i.task_id FOR UPDATE) t
)
UPDATE tasks t
SET unfinished_steps = t.unfinished_steps - l.done,
    failed_steps = t.failed_steps + l.failed,
    updated_at = now()
FROM locked l -- not joined back to i: see steps_complete.sql
WHERE t.task_id = l.task_id
RETURNING t.task_id, t.status, t.unfinished_steps, t.failed_steps
