SELECT workflow_step_id, task_id, namespace_name, task_name, task_version, step_name, status, attempts,
       duration_ms, processed_at
FROM get_slowest_steps($1, $2, $3, $4, $5)
