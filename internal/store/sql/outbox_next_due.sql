-- When the earliest pending delivery is due; NULL when none waits.
SELECT min(next_attempt_at) FROM webhook_outbox WHERE status = 'pending'
