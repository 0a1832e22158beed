-- When the earliest pending step of a queue becomes runnable: the claim
-- loop sleeps until then (backoff expiries wake nobody by NOTIFY).
SELECT min(runnable_at) FROM workflow_steps
WHERE queue = $1 AND status = 'pending' AND runnable_at IS NOT NULL
