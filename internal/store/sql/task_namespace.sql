-- The namespace of one task, for the API's object-level permission check.
SELECT namespace_name FROM tasks WHERE task_id = $1
