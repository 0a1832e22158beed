-- Records that a worker was seen claiming from these queues.
INSERT INTO workers (worker_id, handlers, last_replica) VALUES ($1, $2, $3)
ON CONFLICT (worker_id) DO UPDATE
SET handlers = excluded.handlers, last_seen_at = now(), last_replica = excluded.last_replica
