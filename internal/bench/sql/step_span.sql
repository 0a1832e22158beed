-- From the first claim to the last completion of the steps of template $1's
-- tasks (not the warm-up's), and how many of them completed: the throughput
-- window, on the database's clock.
SELECT min(x.created_at) FILTER (WHERE x.to_state = 'in_progress'),
       max(x.created_at) FILTER (WHERE x.to_state = 'complete'),
       count(*) FILTER (WHERE x.to_state = 'complete')
FROM tasks t JOIN workflow_step_transitions x ON x.task_id = t.task_id
WHERE t.task_name = $1
