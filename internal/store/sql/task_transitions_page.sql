-- One page of a task's transitions and its steps', oldest first, for
-- GET /tasker/tasks/{task_id}/transitions ($2: one step's only). The order
-- (created_at, kind, id) is total: kind 0 is the task's own table, 1 the
-- steps', 2 the task's own again for a final state (so that within one
-- transaction the task ends after the step changes that ended it), and ids
-- are unique within each table. A cursor ($3, $4, $5) resumes
-- strictly after the row it names. A step's in_progress → error → pending
-- written in one transaction share created_at, so id keeps them in order.
WITH tr AS (
  SELECT NULL::uuid AS step_id, NULL::text AS step_name, x.from_state, x.to_state, x.metadata,
         coalesce(x.actor, '') AS actor, x.created_at, x.task_transition_id AS id,
         CASE WHEN x.to_state IN ('complete', 'error', 'cancelled', 'resolved_manually') THEN 2 ELSE 0 END AS kind
  FROM task_transitions x
  WHERE x.task_id = $1 AND $2::uuid IS NULL
  UNION ALL
  SELECT x.workflow_step_id, ws.name, x.from_state, x.to_state, x.metadata,
         coalesce(x.actor, ''), x.created_at, x.workflow_step_transition_id, 1
  FROM workflow_steps ws
  JOIN workflow_step_transitions x ON x.workflow_step_id = ws.workflow_step_id
  WHERE ws.task_id = $1 AND ($2::uuid IS NULL OR ws.workflow_step_id = $2)
)
SELECT step_id, step_name, from_state, to_state, metadata, actor, created_at, id, kind
FROM tr
WHERE $3::timestamptz IS NULL OR (created_at, kind, id) > ($3, $4::integer, $5::bigint)
ORDER BY created_at, kind, id
LIMIT $6
