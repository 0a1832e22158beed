-- The template registry. Replacing a template (register with replace=true)
-- must leave the tasks that already use it unchanged, so a replacement
-- never rewrites a named_tasks row: it retires the old row (deleted_at) and
-- inserts a new one. Uniqueness of namespace/name/version therefore holds
-- among live rows only.

-- +goose Up
ALTER TABLE named_tasks DROP CONSTRAINT named_tasks_task_namespace_id_name_version_key;

-- The row that replaced this one; NULL for a row deleted outright or live.
ALTER TABLE named_tasks ADD COLUMN superseded_by bigint REFERENCES named_tasks;

-- Partial: retired rows (replaced or deleted) keep their version for the
-- tasks that reference them, and a deleted version may be registered anew.
CREATE UNIQUE INDEX named_tasks_live_version ON named_tasks (task_namespace_id, name, version)
  WHERE deleted_at IS NULL;

-- +goose Down
-- Retired rows that share a version with another row are told apart by
-- semver build metadata, so that the full unique constraint can return
-- without deleting rows that tasks reference.
UPDATE named_tasks nt
SET version = nt.version || '+retired.' || nt.named_task_id
WHERE nt.deleted_at IS NOT NULL
  AND EXISTS (
    SELECT 1 FROM named_tasks o
    WHERE o.task_namespace_id = nt.task_namespace_id AND o.name = nt.name AND o.version = nt.version
      AND o.named_task_id <> nt.named_task_id
  );
DROP INDEX named_tasks_live_version;
ALTER TABLE named_tasks DROP COLUMN superseded_by;
ALTER TABLE named_tasks ADD CONSTRAINT named_tasks_task_namespace_id_name_version_key
  UNIQUE (task_namespace_id, name, version);
