-- The current status of one step.
SELECT status FROM workflow_steps WHERE workflow_step_id = $1
