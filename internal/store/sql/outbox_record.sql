-- Records one attempt of a delivery: its log row, and the delivery's new
-- state. The attempt number fences a late report from a replica whose
-- attempt outlived its visibility timeout.
-- $5: 'delivered', 'failed' or 'retry'; $6: the retry delay in ms.
WITH upd AS (
  UPDATE webhook_outbox
  SET status = CASE $5::text WHEN 'retry' THEN 'pending' ELSE $5::text END,
      next_attempt_at = CASE $5::text WHEN 'retry' THEN now() + $6::bigint * interval '1 millisecond' ELSE next_attempt_at END,
      last_status_code = $3, last_error = $4,
      finished_at = CASE $5::text WHEN 'retry' THEN NULL ELSE now() END,
      updated_at = now()
  WHERE delivery_id = $1 AND attempts = $2 AND status = 'pending'
  RETURNING delivery_id
)
INSERT INTO webhook_delivery_attempts (delivery_id, attempt, status_code, error, duration_ms, replica)
SELECT delivery_id, $2, $3, $4, $7, $8 FROM upd
ON CONFLICT DO NOTHING
