-- A task's own transitions and its steps' (or one step's), oldest first.
-- Step transitions are ordered by their id: a step's in_progress → error →
-- pending written in one transaction share a timestamp. Within one
-- transaction a task's start comes before its steps' changes and its end
-- (complete, error, cancelled, resolved) after them: the flush that
-- completes the last step also finalises the task.
SELECT NULL::uuid AS step_id, from_state, to_state, metadata, coalesce(actor, ''), created_at, task_transition_id AS id,
       CASE WHEN to_state IN ('complete', 'error', 'cancelled', 'resolved_manually') THEN 2 ELSE 0 END AS kind
FROM task_transitions WHERE task_id = $1 AND $2::uuid IS NULL
UNION ALL
SELECT st.workflow_step_id, st.from_state, st.to_state, st.metadata, coalesce(st.actor, ''), st.created_at, st.workflow_step_transition_id, 1
FROM workflow_step_transitions st
WHERE st.workflow_step_id IN (SELECT workflow_step_id FROM workflow_steps WHERE task_id = $1)
  AND ($2::uuid IS NULL OR st.workflow_step_id = $2)
ORDER BY created_at, kind, id
