SELECT task_id, coalesce(request_hash, '') FROM tasks
WHERE namespace_name = $1 AND task_name = $2 AND idempotency_key = $3
