-- The live webhook subscriptions, oldest first.
SELECT webhook_id, url, events, secret, coalesce(description, ''), created_at
FROM webhook_subscriptions
WHERE deleted_at IS NULL
ORDER BY webhook_id
