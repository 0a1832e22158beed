-- A subscription's delivery log, newest first, each with its attempts.
-- $2: a status to filter on, or NULL; $3: page size; $4: deliveries older
-- than this id (NULL for the first page).
SELECT o.delivery_id, o.event_id, o.event_name, o.task_id, o.status, o.attempts, o.next_attempt_at,
       o.last_status_code, coalesce(o.last_error, ''), o.created_at, o.finished_at, o.body::text,
       coalesce((SELECT jsonb_agg(jsonb_build_object('attempt', a.attempt, 'status_code', a.status_code,
                                                     'error', a.error, 'duration_ms', a.duration_ms,
                                                     'replica', a.replica, 'at', a.created_at) ORDER BY a.attempt)
                 FROM webhook_delivery_attempts a WHERE a.delivery_id = o.delivery_id), '[]'::jsonb)::text
FROM webhook_outbox o
WHERE o.webhook_id = $1 AND ($2::text IS NULL OR o.status = $2) AND ($4::uuid IS NULL OR o.delivery_id < $4)
ORDER BY o.delivery_id DESC
LIMIT $3
