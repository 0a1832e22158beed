-- Lists audit events for GET /tasker/audit, newest first: every filter
-- optional (NULL: any). $4 is the caller's namespaces when its
-- tasker.audit:index is scoped: it then sees only events of objects in
-- those namespaces, filtered here so pages stay full. ($6, $7) resumes
-- strictly after the cursor's (occurred_at, audit_id).
SELECT audit_id, occurred_at, actor, action, resource, coalesce(resource_id, ''), coalesce(namespace, ''),
       method, path, status, outcome, coalesce(request_id, '')
FROM audit_events
WHERE ($1::text IS NULL OR actor = $1)
  AND ($2::text IS NULL OR resource = $2)
  AND ($3::timestamptz IS NULL OR occurred_at >= $3)
  AND ($4::text[] IS NULL OR namespace = ANY ($4))
  AND ($6::timestamptz IS NULL OR (occurred_at, audit_id) < ($6, $7::bigint))
ORDER BY occurred_at DESC, audit_id DESC
LIMIT $5
