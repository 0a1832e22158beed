-- Records a child task's parent task and step, and the parent step's retry
-- delay should the child end in error.
UPDATE tasks
SET parent_task_id = $2, parent_step_id = $3, parent_retry_delay_ms = $4, updated_at = now()
WHERE task_id = $1
