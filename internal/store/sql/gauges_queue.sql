-- The ready queue by namespace and template: steps runnable now and not yet
-- claimed, and how long the oldest of them has waited (reason ''). It reads
-- the partial index workflow_steps_ready and each step's task by key.
-- Then the steps that are ready but parked, by why they wait (paused,
-- limit, task_limit) and since when, from the partial index
-- workflow_steps_parked: waiting costs the claims nothing, but operators
-- see it here.
SELECT t.namespace_name, t.task_name, '', count(*), extract(epoch FROM now() - min(w.runnable_at))::float8
FROM workflow_steps w JOIN tasks t ON t.task_id = w.task_id
WHERE w.status = 'pending' AND w.runnable_at IS NOT NULL AND w.runnable_at <= now()
GROUP BY t.namespace_name, t.task_name
UNION ALL
SELECT t.namespace_name, t.task_name, w.parked, count(*),
       coalesce(extract(epoch FROM now() - min(w.parked_at)), 0)::float8
FROM workflow_steps w JOIN tasks t ON t.task_id = w.task_id
WHERE w.parked IS NOT NULL AND w.status = 'pending'
GROUP BY t.namespace_name, t.task_name, w.parked
