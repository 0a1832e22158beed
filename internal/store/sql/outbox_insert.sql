-- Writes deliveries into the outbox, inside the transaction of the
-- transition that caused them. Subscriptions deleted in the meantime are
-- skipped rather than failing the transition. One NOTIFY ($8) wakes the
-- replicas' dispatchers.
WITH i AS (
  SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::uuid[], $6::jsonb[])
    AS i(delivery_id, webhook_id, event_id, event_name, task_id, body)
), ins AS (
  INSERT INTO webhook_outbox (delivery_id, webhook_id, event_id, event_name, task_id, body, next_attempt_at)
  SELECT i.delivery_id, i.webhook_id, i.event_id, i.event_name, i.task_id, i.body, now() + $7::bigint * interval '1 millisecond'
  FROM i JOIN webhook_subscriptions s ON s.webhook_id = i.webhook_id AND s.deleted_at IS NULL
  RETURNING 1
), counted AS (
  SELECT count(*) AS n FROM ins
), notified AS (
  SELECT pg_notify($8, '') FROM counted WHERE n > 0
)
SELECT n, (SELECT count(*) FROM notified) FROM counted
