-- The live (neither deleted nor superseded) row of one template version.
SELECT nt.named_task_id, nt.content_hash
FROM named_tasks nt
JOIN task_namespaces ns USING (task_namespace_id)
WHERE ns.name = $1 AND nt.name = $2 AND nt.version = $3 AND nt.deleted_at IS NULL;
