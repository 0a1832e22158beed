-- Locks a task for a manual action; its status decides what is allowed.
SELECT status FROM tasks WHERE task_id = $1 FOR UPDATE
