-- A parent finished (complete or resolved): each child has one fewer
-- unfinished parent, and a pending child reaching zero becomes runnable.
-- This is the O(changed) readiness update: it touches the finished steps'
-- children only, whatever the size of the task. Children are updated, and
-- so locked, in id order (concurrent flushes share children in a fan-in;
-- see steps_complete.sql for how). Children that
-- become runnable together are staggered within their task, so a huge
-- fan-out interleaves with other tasks' work: blocks of 32 siblings share a
-- runnable time, each block $2 µs × 32 after the previous one. Keeping a
-- block's siblings adjacent in the queue (same time, ids in creation order)
-- lets one claim take them together, so their completions land in one flush
-- and a fan-in child or task row is updated once, not by several replicas
-- waiting on each other's row locks (3 replicas: 4,100 → … steps/s).
-- Replicas are woken with one NOTIFY when anything became runnable.
WITH counts AS (
  SELECT e.to_step_id AS id, count(*)::int AS n
  FROM unnest($1::uuid[]) AS p(id),
       LATERAL (SELECT to_step_id FROM workflow_step_edges e WHERE e.from_step_id = p.id OFFSET 0) e
  GROUP BY e.to_step_id
), ranked AS (
  -- A child's place among its task's siblings released together, from the
  -- row as this statement's snapshot sees it: it only spaces runnable
  -- times. Whether the child is ready is decided by the update below, on
  -- the row as it is when the update locks it (a concurrent flush may have
  -- released the same fan-in child first).
  SELECT c.id, c.n,
         row_number() OVER (PARTITION BY w.task_id, (w.status = 'pending' AND w.unfinished_parents = c.n)
                            ORDER BY c.id) - 1 AS k
  FROM counts c,
       LATERAL (SELECT task_id, status, unfinished_parents FROM workflow_steps w
                WHERE w.workflow_step_id = c.id OFFSET 0) w
  ORDER BY c.id
), updated AS (
  UPDATE workflow_steps w
  SET unfinished_parents = w.unfinished_parents - r.n,
      runnable_at = CASE WHEN w.status = 'pending' AND w.unfinished_parents = r.n
                         THEN now() + (r.k / 32) * 32 * $2::bigint * interval '1 microsecond'
                         ELSE w.runnable_at END,
      updated_at = now()
  FROM ranked r
  -- By primary key, one probe per child as the update reaches it (the hot
  -- planner rules out scans and hash joins whatever the statistics say).
  WHERE w.workflow_step_id = r.id
  RETURNING w.status = 'pending' AND w.unfinished_parents = 0 AS ready
)
SELECT count(*) FILTER (WHERE ready),
       (SELECT count(*) FROM (SELECT pg_notify($3, '') WHERE EXISTS (SELECT 1 FROM updated WHERE ready)) n)
FROM updated
