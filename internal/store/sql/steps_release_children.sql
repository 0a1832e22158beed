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
-- waiting on each other's row locks.
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
  -- the row as it is when the update reaches it (a concurrent flush may
  -- have released the same fan-in child first).
  SELECT c.id, c.n,
         row_number() OVER (PARTITION BY w.task_id, (w.status = 'pending' AND w.unfinished_parents = c.n)
                            ORDER BY c.id) - 1 AS k
  FROM counts c,
       LATERAL (SELECT task_id, status, unfinished_parents FROM workflow_steps w
                WHERE w.workflow_step_id = c.id OFFSET 0) w
), m AS (
  -- Each child's [finished parents, place], by id (text).
  SELECT array_agg(id) AS ids, jsonb_object_agg(id::text, jsonb_build_array(n, k)) AS m FROM ranked
), updated AS (
  -- By the primary key's scan of the id array, so in id order, each row
  -- locked by being updated (see steps_complete.sql).
  UPDATE workflow_steps w
  SET unfinished_parents = w.unfinished_parents - ((SELECT m FROM m) -> w.workflow_step_id::text ->> 0)::int,
      runnable_at = CASE WHEN w.status = 'pending'
                              AND w.unfinished_parents = ((SELECT m FROM m) -> w.workflow_step_id::text ->> 0)::int
                         THEN now() + (((SELECT m FROM m) -> w.workflow_step_id::text ->> 1)::int / 32) * 32
                                      * $2::bigint * interval '1 microsecond'
                         ELSE w.runnable_at END,
      updated_at = now()
  WHERE w.workflow_step_id = ANY ((SELECT ids FROM m)::uuid[]) -- an array, not a subquery to compare with
  RETURNING w.status = 'pending' AND w.unfinished_parents = 0 AS ready
)
SELECT count(*) FILTER (WHERE ready),
       (SELECT count(*) FROM (SELECT pg_notify($3, '') WHERE EXISTS (SELECT 1 FROM updated WHERE ready)) n)
FROM updated
