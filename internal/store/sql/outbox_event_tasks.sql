-- What events need to know of their tasks when the engine did not have it
-- at hand (lease rescue, manual actions).
SELECT task_id, namespace_name, task_name, task_version, coalesce(correlation_id, ''), coalesce(traceparent, '')
FROM tasks WHERE task_id = ANY ($1::uuid[])
