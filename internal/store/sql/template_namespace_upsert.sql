-- DO UPDATE rather than DO NOTHING so that RETURNING yields the row even
-- when another transaction created the namespace first.
INSERT INTO task_namespaces (name)
VALUES ($1)
ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
RETURNING task_namespace_id;
