-- The readiness of a task's steps (Tasker's get_step_readiness_status), all
-- of them or those in $2, with their dependency levels, in creation order.
SELECT r.workflow_step_id, r.name, r.current_state, r.dependencies_satisfied, r.retry_eligible,
       r.ready_for_execution, r.last_failure_at, r.next_retry_at, r.total_parents, r.completed_parents,
       r.attempts, r.retry_limit, r.blocked_reason, l.dependency_level
FROM get_step_readiness_status($1, $2::uuid[]) r
LEFT JOIN calculate_dependency_levels($1) l ON l.workflow_step_id = r.workflow_step_id
ORDER BY r.workflow_step_id
