SELECT workflow_step_id, name FROM workflow_steps WHERE workflow_step_id = ANY ($1::uuid[])
