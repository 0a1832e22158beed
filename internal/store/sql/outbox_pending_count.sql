SELECT count(*) FROM webhook_outbox WHERE status = 'pending'
