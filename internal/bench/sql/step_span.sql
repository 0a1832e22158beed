-- From the first claim to the last completion, and how many steps completed:
-- the throughput window, on the database's clock.
SELECT min(created_at) FILTER (WHERE to_state = 'in_progress'),
       max(created_at) FILTER (WHERE to_state = 'complete'),
       count(*) FILTER (WHERE to_state = 'complete')
FROM workflow_step_transitions
