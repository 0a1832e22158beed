-- A finished child task's results, as its parent step's results: the
-- child's id and the results of its complete (or resolved) steps by name.
SELECT jsonb_build_object('task_id', $1::uuid,
                          'steps', coalesce(jsonb_object_agg(name, coalesce(results, 'null'::jsonb)), '{}'::jsonb))
FROM workflow_steps
WHERE task_id = $1 AND status IN ('complete', 'resolved_manually')
