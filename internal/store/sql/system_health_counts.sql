SELECT total_tasks, pending_tasks, in_progress_tasks, complete_tasks, error_tasks, cancelled_tasks,
       resolved_manually_tasks, total_steps, pending_steps, in_progress_steps, complete_steps, error_steps,
       cancelled_steps, resolved_manually_steps, retryable_errors, exhausted_retries, in_backoff,
       active_connections, max_connections
FROM get_system_health_counts()
