-- Tasks by their ids (the GraphQL API's batch; a create's read-back).
-- One primary-key lookup per id (OFFSET 0 keeps the lookups apart): with
-- "task_id = ANY ($1)" a table that grew faster than autovacuum analyses
-- it was scanned whole.
SELECT task_id, named_task_id, namespace_name, task_name, task_version, status, context,
       coalesce(initiator, ''), coalesce(source_system, ''), coalesce(reason, ''), tags,
       coalesce(idempotency_key, ''), priority, run_at, coalesce(correlation_id, ''), coalesce(traceparent, ''),
       total_steps, unfinished_steps, failed_steps, requested_at, started_at, completed_at, created_at, updated_at
FROM (SELECT DISTINCT unnest($1::uuid[]) AS id) i,
     LATERAL (SELECT * FROM tasks t WHERE t.task_id = i.id OFFSET 0) t
ORDER BY task_id
