-- The steps of tasks this transaction just created, read back for the
-- creates' answers: steps_of_tasks.sql without the parents' names, which
-- the caller fills in from the edges it wrote (looking them up through the
-- edges was 0.14 ms of a create's 0.45 ms of database time).
SELECT w.workflow_step_id, w.task_id, w.name, w.handler, w.queue, w.status, w.attempts, w.retry_base,
       w.retry_limit, w.retryable, w.skippable, w.inputs, w.results, w.last_error, w.unfinished_parents,
       w.runnable_at, coalesce(w.lease_owner, ''), w.lease_expires_at, w.last_attempted_at, w.processed_at,
       w.created_at, w.updated_at, '{}'::text[] AS parents
-- One index lookup per task (OFFSET 0 keeps them apart; see tasks_by_id.sql).
FROM (SELECT DISTINCT unnest($1::uuid[]) AS id) i,
     LATERAL (SELECT * FROM workflow_steps w WHERE w.task_id = i.id OFFSET 0) w
ORDER BY w.task_id, w.workflow_step_id
