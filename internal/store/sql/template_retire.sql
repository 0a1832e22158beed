-- Retires a live row (soft delete, or replacement). The row itself stays:
-- tasks keep referencing it, and their steps keep its named_steps.
UPDATE named_tasks
SET deleted_at = now(), updated_at = now()
WHERE named_task_id = $1 AND deleted_at IS NULL;
