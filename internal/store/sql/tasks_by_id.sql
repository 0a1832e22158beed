-- Tasks by their ids (the GraphQL API's batch).
SELECT task_id, named_task_id, namespace_name, task_name, task_version, status, context,
       coalesce(initiator, ''), coalesce(source_system, ''), coalesce(reason, ''), tags,
       coalesce(idempotency_key, ''), priority, run_at, coalesce(correlation_id, ''), coalesce(traceparent, ''),
       total_steps, unfinished_steps, failed_steps, requested_at, started_at, completed_at, created_at, updated_at
FROM tasks WHERE task_id = ANY($1::uuid[])
ORDER BY task_id
