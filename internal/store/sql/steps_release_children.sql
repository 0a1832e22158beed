-- A parent finished (complete or resolved): each child has one fewer
-- unfinished parent, and a pending child reaching zero becomes runnable.
-- This is the O(changed) readiness update: it touches the finished steps'
-- children only, whatever the size of the task. Children are locked in id
-- order (concurrent flushes share children in a fan-in). Children that
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
), locked AS (
  SELECT w.workflow_step_id, w.task_id, w.unfinished_parents - c.n AS remaining,
         (w.status = 'pending' AND w.unfinished_parents - c.n = 0) AS ready
  -- In id order, one locking key lookup per child (see steps_complete.sql):
  -- counts comes out of a hash aggregate in no particular order.
  FROM (SELECT * FROM counts ORDER BY id) c,
       LATERAL (SELECT * FROM workflow_steps w WHERE w.workflow_step_id = c.id FOR UPDATE) w
), ranked AS (
  SELECT l.*, row_number() OVER (PARTITION BY l.task_id, l.ready ORDER BY l.workflow_step_id) - 1 AS k
  FROM locked l
), updated AS (
  UPDATE workflow_steps w
  SET unfinished_parents = r.remaining,
      runnable_at = CASE WHEN r.ready THEN now() + (r.k / 32) * 32 * $2::bigint * interval '1 microsecond' ELSE w.runnable_at END,
      updated_at = now()
  FROM ranked r
  -- By primary key, one lookup per locked child (the hot planner rules out
  -- scans and hash joins whatever the statistics say).
  WHERE w.workflow_step_id = r.workflow_step_id
  RETURNING r.ready
)
SELECT count(*) FILTER (WHERE ready),
       (SELECT count(*) FROM (SELECT pg_notify($3, '') WHERE EXISTS (SELECT 1 FROM updated WHERE ready)) n)
FROM updated
