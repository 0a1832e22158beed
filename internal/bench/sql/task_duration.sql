SELECT status, extract(epoch FROM coalesce(completed_at, now()) - created_at) FROM tasks WHERE task_id = $1
