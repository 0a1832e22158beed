-- The steps of many tasks (one query for a page of tasks, the GraphQL API's
-- batch), with their parents' names, by task then creation order.
SELECT w.workflow_step_id, w.task_id, w.name, w.handler, w.queue, w.status, w.attempts, w.retry_base,
       w.retry_limit, w.retryable, w.skippable, w.inputs, w.results, w.last_error, w.unfinished_parents,
       w.runnable_at, coalesce(w.lease_owner, ''), w.lease_expires_at, w.last_attempted_at, w.processed_at,
       w.created_at, w.updated_at,
       coalesce((SELECT array_agg(p.name ORDER BY p.name)
                 FROM workflow_step_edges e,
                      -- a primary-key lookup per edge, never a scan (see steps_claim.sql)
                      LATERAL (SELECT name FROM workflow_steps p WHERE p.workflow_step_id = e.from_step_id OFFSET 0) p
                 WHERE e.to_step_id = w.workflow_step_id), '{}') AS parents
-- One index lookup per task (OFFSET 0 keeps them apart; see tasks_by_id.sql).
FROM (SELECT DISTINCT unnest($1::uuid[]) AS id) i,
     LATERAL (SELECT * FROM workflow_steps w WHERE w.task_id = i.id OFFSET 0) w
ORDER BY w.task_id, w.workflow_step_id
