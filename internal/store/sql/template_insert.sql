INSERT INTO named_tasks (task_namespace_id, name, version, description, template, content_hash)
VALUES ($1, $2, $3, NULLIF($4, ''), $5, $6)
RETURNING named_task_id;
