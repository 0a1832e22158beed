-- Steps runnable now and not yet claimed, by queue: the depth of the ready
-- queue. It reads only the partial index workflow_steps_ready.
SELECT queue, count(*) FROM workflow_steps
WHERE status = 'pending' AND runnable_at IS NOT NULL AND runnable_at <= now()
GROUP BY queue
