-- Forgets finished deliveries older than $1, at most $2 at a time.
WITH old AS (
  SELECT delivery_id FROM webhook_outbox
  WHERE status <> 'pending' AND finished_at < $1
  ORDER BY finished_at
  LIMIT $2
)
DELETE FROM webhook_outbox o USING old WHERE o.delivery_id = old.delivery_id
