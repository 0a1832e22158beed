-- The child task a subtask step started, if any (unique by tasks_parent_step).
SELECT task_id FROM tasks WHERE parent_step_id = $1
