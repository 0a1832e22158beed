-- Parent steps waiting for tasks that just reached a final state ($1),
-- locked in id order: each child's parent step, if it still waits for that
-- child (in_progress, lease_owner naming the child), with what the child's
-- outcome means for it. A complete child hands over its steps' results.
WITH children AS (
  SELECT t.task_id, t.status, t.parent_step_id, t.parent_retry_delay_ms,
         t.namespace_name || '.' || t.task_name || '@' || t.task_version AS full_name
  FROM tasks t
  WHERE t.task_id = ANY($1::uuid[]) AND t.parent_step_id IS NOT NULL
), waiting AS (
  SELECT w.workflow_step_id, w.attempts, c.task_id AS child_id, c.status AS child_status,
         coalesce(c.parent_retry_delay_ms, 1000) AS delay_ms, c.full_name
  FROM workflow_steps w JOIN children c ON c.parent_step_id = w.workflow_step_id
  WHERE w.status = 'in_progress' AND w.lease_owner = 'subtask:' || c.task_id::text
  ORDER BY w.workflow_step_id
  FOR UPDATE OF w
)
SELECT w.workflow_step_id, w.attempts, w.child_id, w.child_status, w.delay_ms, w.full_name,
       CASE WHEN w.child_status IN ('complete', 'resolved_manually') THEN
         jsonb_build_object('task_id', w.child_id,
           'steps', (SELECT coalesce(jsonb_object_agg(s.name, coalesce(s.results, 'null'::jsonb)), '{}'::jsonb)
                     FROM workflow_steps s
                     WHERE s.task_id = w.child_id AND s.status IN ('complete', 'resolved_manually')))
       END AS results
FROM waiting w
