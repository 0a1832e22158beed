SELECT namespace_name, task_name, task_version, step_name, executions, total_attempts, retries, max_attempts,
       exhausted
FROM get_most_retried_steps($1, $2, $3, $4, $5)
