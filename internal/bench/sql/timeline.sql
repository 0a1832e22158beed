-- The throughput window of template $1's tasks in 100 ms buckets per
-- replica: steps claimed and completed, and the statements that did it (a
-- claim or a flush writes all its transitions in one transaction, so they
-- share its timestamp).
WITH t AS (
  SELECT x.created_at, x.to_state, x.metadata->>'replica' AS replica,
         min(x.created_at) FILTER (WHERE x.to_state = 'in_progress') OVER () AS first
  FROM tasks k JOIN workflow_step_transitions x ON x.task_id = k.task_id
  WHERE k.task_name = $1 AND x.to_state IN ('in_progress', 'complete')
)
SELECT (floor(extract(epoch FROM created_at - first) * 10) * 100)::bigint AS ms, replica,
       count(*) FILTER (WHERE to_state = 'in_progress'),
       count(DISTINCT created_at) FILTER (WHERE to_state = 'in_progress'),
       count(*) FILTER (WHERE to_state = 'complete'),
       count(DISTINCT created_at) FILTER (WHERE to_state = 'complete')
FROM t
GROUP BY 1, 2
ORDER BY 1, 2
