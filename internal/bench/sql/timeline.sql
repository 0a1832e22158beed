-- The throughput window in 100 ms buckets per replica: steps claimed and
-- completed, and the statements that did it (a claim or a flush writes all
-- its transitions in one transaction, so they share its timestamp).
WITH t AS (
  SELECT created_at, to_state, metadata->>'replica' AS replica,
         min(created_at) FILTER (WHERE to_state = 'in_progress') OVER () AS first
  FROM workflow_step_transitions
  WHERE to_state IN ('in_progress', 'complete')
)
SELECT (floor(extract(epoch FROM created_at - first) * 10) * 100)::bigint AS ms, replica,
       count(*) FILTER (WHERE to_state = 'in_progress'),
       count(DISTINCT created_at) FILTER (WHERE to_state = 'in_progress'),
       count(*) FILTER (WHERE to_state = 'complete'),
       count(DISTINCT created_at) FILTER (WHERE to_state = 'complete')
FROM t
GROUP BY 1, 2
ORDER BY 1, 2
