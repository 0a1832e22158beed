-- Takes up to $1 due deliveries for one attempt each: the attempt is
-- counted and the row hidden until $2 ms from now (longer than an attempt
-- may last), so a replica that dies mid-attempt only delays it. SKIP
-- LOCKED keeps replicas from waiting on each other.
WITH due AS (
  SELECT delivery_id
  FROM webhook_outbox
  WHERE status = 'pending' AND next_attempt_at <= now()
  ORDER BY next_attempt_at, delivery_id
  LIMIT $1
  FOR UPDATE SKIP LOCKED
), taken AS (
  UPDATE webhook_outbox o
  SET attempts = o.attempts + 1, next_attempt_at = now() + $2::bigint * interval '1 millisecond', updated_at = now()
  FROM due d
  WHERE o.delivery_id = d.delivery_id
  RETURNING o.delivery_id, o.webhook_id, o.event_id, o.event_name, o.task_id, o.body, o.attempts
)
SELECT t.delivery_id, t.webhook_id, t.event_id, t.event_name, t.task_id, t.body::text, t.attempts, s.url, s.secret
FROM taken t JOIN webhook_subscriptions s ON s.webhook_id = t.webhook_id
