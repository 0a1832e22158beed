-- Lists tasks for GET /tasker/tasks: every filter optional (NULL: any), one
-- order, one page. The parts in double braces are chosen in tasks_list.go
-- from a fixed set (never from input): {{.Key}} is the sort expression,
-- {{.Dir}} ASC or DESC, and when a cursor is given the row comparison with
-- {{.Cmp}} resumes strictly after the cursor's (key, task_id). task_id
-- breaks ties, so the order is total and a keyset page never repeats or
-- skips a row whose key does not change. $12 is the caller's namespaces
-- when its permission is scoped: the filter is here, not applied to a
-- fetched page, so pages stay full and offsets stay right.
-- With the default order, created_at DESC, the scan walks tasks_created_at
-- backwards and stops after the page.
-- context is left out: it may be large, and a list shows many tasks.
SELECT t.task_id, t.named_task_id, t.namespace_name, t.task_name, t.task_version, t.status,
       coalesce(t.initiator, ''), coalesce(t.source_system, ''), coalesce(t.reason, ''), t.tags,
       coalesce(t.idempotency_key, ''), t.priority, t.run_at, coalesce(t.correlation_id, ''),
       t.total_steps, t.unfinished_steps, t.failed_steps, t.requested_at, t.started_at, t.completed_at,
       t.created_at, t.updated_at
FROM tasks t
WHERE ($1::text IS NULL OR t.namespace_name = $1)
  AND ($2::text IS NULL OR t.task_name = $2)
  AND ($3::text IS NULL OR t.task_version = $3)
  AND ($4::text[] IS NULL OR t.status = ANY ($4))
  AND ($5::text IS NULL OR t.initiator = $5)
  AND ($6::text IS NULL OR t.source_system = $6)
  AND ($7::text[] IS NULL OR t.tags @> $7)
  AND ($8::timestamptz IS NULL OR t.created_at > $8)
  AND ($9::timestamptz IS NULL OR t.created_at < $9)
  AND ($12::text[] IS NULL OR t.namespace_name = ANY ($12))
{{- if .After}}
  AND ({{.Key}}, t.task_id) {{.Cmp}} ($13::{{.KeyType}}, $14::uuid)
{{- end}}
ORDER BY {{.Key}} {{.Dir}}, t.task_id {{.Dir}}
LIMIT $10 OFFSET $11
