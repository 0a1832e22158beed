-- A task's critical path, root first (get_task_critical_path).
SELECT path_position, workflow_step_id, name, status, duration_ms, cumulative_ms
FROM get_task_critical_path($1)
ORDER BY path_position
