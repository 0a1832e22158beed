-- Selects the tasks of a bulk action (POST /tasker/tasks/bulk/…): the
-- filters of task_list.sql ($1–$9, NULL: any; keep the two in step), or
-- the ids of $10, always within the caller's namespaces ($11, NULL: all).
-- Ids only, in task_id order: the bulk action works through them in that
-- order, batch by batch, so that two bulk calls over the same tasks lock
-- them in the same order. $12 bounds the answer; the caller asks for one
-- more than it accepts, to tell "exactly the limit" from "too many".
SELECT t.task_id
FROM tasks t
WHERE ($1::text IS NULL OR t.namespace_name = $1)
  AND ($2::text IS NULL OR t.task_name = $2)
  AND ($3::text IS NULL OR t.task_version = $3)
  AND ($4::text[] IS NULL OR t.status = ANY ($4))
  AND ($5::text IS NULL OR t.initiator = $5)
  AND ($6::text IS NULL OR t.source_system = $6)
  AND ($7::text[] IS NULL OR t.tags @> $7)
  AND ($8::timestamptz IS NULL OR t.created_at > $8)
  AND ($9::timestamptz IS NULL OR t.created_at < $9)
  AND ($10::uuid[] IS NULL OR t.task_id = ANY ($10))
  AND ($11::text[] IS NULL OR t.namespace_name = ANY ($11))
ORDER BY t.task_id
LIMIT $12
