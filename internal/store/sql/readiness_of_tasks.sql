-- The readiness of every step of many tasks, with its dependency level,
-- in one statement (the GraphQL API's batch), by task then creation order.
SELECT r.workflow_step_id, r.task_id, r.name, r.current_state, r.dependencies_satisfied, r.retry_eligible,
       r.ready_for_execution, r.last_failure_at, r.next_retry_at, r.total_parents, r.completed_parents,
       r.attempts, r.retry_limit, r.blocked_reason, l.dependency_level
FROM get_step_readiness_status_batch($1::uuid[]) r
LEFT JOIN (SELECT lv.workflow_step_id, lv.dependency_level
           FROM unnest($1::uuid[]) t(id), LATERAL calculate_dependency_levels(t.id) lv) l
       ON l.workflow_step_id = r.workflow_step_id
ORDER BY r.task_id, r.workflow_step_id
