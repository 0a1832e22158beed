-- Changes a task's annotations (PATCH /tasker/tasks/{task_id}): reason when
-- $2, tags when $4. Nothing else of a task may change this way, whatever
-- its state. No row when the task does not exist.
UPDATE tasks
SET reason = CASE WHEN $2 THEN nullif($3::text, '') ELSE reason END,
    tags = CASE WHEN $4 THEN $5::text[] ELSE tags END,
    updated_at = now()
WHERE task_id = $1
RETURNING task_id
