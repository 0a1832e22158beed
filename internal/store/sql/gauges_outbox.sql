-- Webhook deliveries not yet made (the partial index webhook_outbox_due).
SELECT count(*) FROM webhook_outbox WHERE status = 'pending'
