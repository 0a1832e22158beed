-- A task's parent (the task and step that started it as a subtask) and its
-- children, oldest first.
SELECT 'parent' AS relation, p.task_id, t.parent_step_id, coalesce(s.name, ''),
       p.namespace_name, p.task_name, p.task_version, p.status, p.created_at
FROM tasks t
JOIN tasks p ON p.task_id = t.parent_task_id
LEFT JOIN workflow_steps s ON s.workflow_step_id = t.parent_step_id
WHERE t.task_id = $1
UNION ALL
SELECT 'child', c.task_id, c.parent_step_id, coalesce(s.name, ''),
       c.namespace_name, c.task_name, c.task_version, c.status, c.created_at
FROM tasks c
LEFT JOIN workflow_steps s ON s.workflow_step_id = c.parent_step_id
WHERE c.parent_task_id = $1
ORDER BY 1 DESC, 9, 2
