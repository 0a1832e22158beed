-- One remote step as the worker endpoints need it: its template (for the
-- timeout and backoff), state, attempt and lease.
SELECT w.workflow_step_id, w.task_id, t.named_task_id, w.name, w.handler, w.queue, w.status, w.attempts,
       coalesce(w.lease_owner, ''), w.lease_expires_at, w.last_attempted_at
FROM workflow_steps w JOIN tasks t ON t.task_id = w.task_id
WHERE w.workflow_step_id = $1
