-- A task's execution context (Tasker's get_task_execution_context); no row
-- when the task does not exist.
SELECT total_steps, pending_steps, in_progress_steps, completed_steps, failed_steps, cancelled_steps,
       ready_steps, execution_status, recommended_action, completion_percentage::double precision, health_status
FROM get_task_execution_context($1)
