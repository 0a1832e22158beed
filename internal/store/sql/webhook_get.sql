SELECT webhook_id, url, events, secret, coalesce(description, ''), created_at
FROM webhook_subscriptions
WHERE webhook_id = $1 AND deleted_at IS NULL
