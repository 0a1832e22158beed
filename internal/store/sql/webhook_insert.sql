-- Registers a webhook subscription and tells every replica ($6 = channel),
-- so that their engines match its events from their next transition on.
WITH ins AS (
  INSERT INTO webhook_subscriptions (webhook_id, url, events, secret, description)
  VALUES ($1, $2, $3, $4, $5)
  RETURNING created_at
), notified AS (
  SELECT pg_notify($6, $1::text) FROM ins
)
SELECT created_at FROM ins, notified
