-- Ready → start latency of every step's first claim, in seconds. A root is
-- ready when its task was created; a child when its last parent completed.
-- Both ends are transaction start times on the database's clock. $1 keeps
-- the steps of one template name ('' for all).
WITH starts AS (
  SELECT workflow_step_id, min(created_at) AS started
  FROM workflow_step_transitions WHERE to_state = 'in_progress'
  GROUP BY workflow_step_id
), ready AS (
  SELECT w.workflow_step_id,
         coalesce((SELECT max(pt.created_at)
                   FROM workflow_step_edges e
                   JOIN workflow_step_transitions pt ON pt.workflow_step_id = e.from_step_id AND pt.to_state = 'complete'
                   WHERE e.to_step_id = w.workflow_step_id), t.created_at) AS ready_at
  FROM workflow_steps w JOIN tasks t ON t.task_id = w.task_id
  WHERE $1::text = '' OR t.task_name = $1
)
SELECT coalesce(percentile_cont(ARRAY[0.5, 0.95, 0.99, 1]) WITHIN GROUP (ORDER BY extract(epoch FROM s.started - r.ready_at)), ARRAY[0, 0, 0, 0]::float8[]),
       count(*)
FROM starts s JOIN ready r ON r.workflow_step_id = s.workflow_step_id
