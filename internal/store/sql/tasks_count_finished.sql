-- Counts finished steps on their tasks: finalisation is a counter reaching
-- zero under the task row's lock, so when replicas finish a task's last
-- steps at the same time exactly one of them sees zero. $2 maps each task
-- id (text) to [steps done, of which failed]. Rows are locked in id order
-- by the update itself (see steps_complete.sql for how).
UPDATE tasks t
SET unfinished_steps = t.unfinished_steps - ($2::jsonb -> t.task_id::text ->> 0)::int,
    failed_steps = t.failed_steps + ($2::jsonb -> t.task_id::text ->> 1)::int,
    updated_at = now()
WHERE t.task_id = ANY ($1::uuid[])
RETURNING t.task_id, t.status, t.unfinished_steps, t.failed_steps
