SELECT nt.named_task_id, ns.name, nt.name, nt.version, coalesce(nt.description, ''),
       nt.template, nt.content_hash, nt.deleted_at, nt.superseded_by, nt.created_at,
       coalesce((SELECT jsonb_object_agg(s.name, s.named_step_id)
                 FROM named_steps s WHERE s.named_task_id = nt.named_task_id), '{}'::jsonb)
FROM named_tasks nt
JOIN task_namespaces ns USING (task_namespace_id)
WHERE nt.named_task_id = ANY($1::bigint[]);
