-- Locks a step of a task for a manual action.
SELECT status, attempts, unfinished_parents FROM workflow_steps
WHERE workflow_step_id = $1 AND task_id = $2 FOR UPDATE
