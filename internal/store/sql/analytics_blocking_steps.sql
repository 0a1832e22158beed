SELECT namespace_name, task_name, task_version, step_name, tasks_blocked, dependents_blocked, max_dependents,
       failed, running, waiting, cancelled
FROM get_blocking_steps($1, $2, $3, $4, $5)
