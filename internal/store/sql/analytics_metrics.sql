-- Performance since $1: the all-namespaces row first, then one per namespace.
SELECT namespace_name, active_tasks, tasks_created, tasks_completed, tasks_failed, completion_rate, error_rate,
       task_duration_avg_ms, task_duration_p50_ms, task_duration_p95_ms, task_duration_p99_ms,
       steps_completed, step_failures, step_error_rate,
       step_duration_avg_ms, step_duration_p50_ms, step_duration_p95_ms, step_duration_p99_ms
FROM get_analytics_metrics($1)
