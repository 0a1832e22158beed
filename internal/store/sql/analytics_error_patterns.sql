SELECT namespace_name, task_name, task_version, step_name, pattern, occurrences, affected_steps, retried,
       first_seen_at, last_seen_at, sample_message
FROM get_error_patterns($1, $2, $3, $4, $5)
