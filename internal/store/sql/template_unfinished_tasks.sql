-- Unfinished tasks of any row of one template version (a replaced row's
-- tasks still run the version being deleted).
SELECT count(*)
FROM tasks t
WHERE t.status IN ('pending', 'in_progress', 'error')
  AND t.named_task_id IN (
    SELECT nt.named_task_id
    FROM named_tasks nt
    JOIN task_namespaces ns USING (task_namespace_id)
    WHERE ns.name = $1 AND nt.name = $2 AND nt.version = $3
  );
