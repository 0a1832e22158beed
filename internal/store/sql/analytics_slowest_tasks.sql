SELECT task_id, namespace_name, task_name, task_version, status, duration_ms, total_steps, failed_steps,
       coalesce(initiator, ''), started_at, completed_at
FROM get_slowest_tasks($1, $2, $3, $4, $5)
