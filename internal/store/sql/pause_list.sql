-- Every pause in force, namespace pauses ('' task name) first.
SELECT namespace_name, task_name, paused_at, coalesce(paused_by, '') FROM handler_pauses
ORDER BY namespace_name, task_name
