SELECT nt.named_task_id, ns.name, nt.name, nt.version, coalesce(nt.description, ''), nt.content_hash,
       (SELECT count(*) FROM named_steps s WHERE s.named_task_id = nt.named_task_id),
       nt.created_at
FROM named_tasks nt
JOIN task_namespaces ns USING (task_namespace_id)
WHERE nt.deleted_at IS NULL
ORDER BY ns.name, nt.name, nt.named_task_id;
