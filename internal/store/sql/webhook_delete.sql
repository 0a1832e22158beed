-- Deletes a subscription (softly: outbox rows keep their reference),
-- cancels its pending deliveries and tells every replica ($2 = channel).
WITH gone AS (
  UPDATE webhook_subscriptions SET deleted_at = now()
  WHERE webhook_id = $1 AND deleted_at IS NULL
  RETURNING webhook_id
), cancelled AS (
  UPDATE webhook_outbox o
  SET status = 'cancelled', last_error = 'the webhook was deleted', finished_at = now(), updated_at = now()
  FROM gone g
  WHERE o.webhook_id = g.webhook_id AND o.status = 'pending'
), notified AS (
  SELECT pg_notify($2, $1::text) FROM gone
)
SELECT count(*) FROM gone, notified
