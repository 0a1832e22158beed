-- Foreign keys off the hot path.
--
-- Every task create, claim and completion checks its foreign keys with a
-- trigger per row. Two kinds cost more than they protect:
--
-- * tasks → named_tasks and workflow_steps → named_steps. Every create of a
--   template's tasks locks the same template rows FOR KEY SHARE; with tens
--   of concurrent creates those shared locks become multixacts, which every
--   create then extends and every reader resolves. Template versions are
--   never deleted (retirement is soft, deleted_at), and a task's template
--   ids come from the registry in the same statement that writes them, so
--   the keys cannot dangle.
-- * workflow_step_transitions → workflow_steps and task_transitions → tasks.
--   The engine writes a transition in the statement that locked and changed
--   its step or task, so the referenced row always exists. What the keys
--   still gave is the cascade when a task is deleted (retention): the
--   triggers below keep that, per statement, so deleting tasks still takes
--   their transitions along.

-- +goose Up
ALTER TABLE tasks DROP CONSTRAINT tasks_named_task_id_fkey;
ALTER TABLE workflow_steps DROP CONSTRAINT workflow_steps_named_step_id_fkey;
ALTER TABLE workflow_step_transitions DROP CONSTRAINT workflow_step_transitions_workflow_step_id_fkey;
ALTER TABLE task_transitions DROP CONSTRAINT task_transitions_task_id_fkey;

-- +goose StatementBegin
CREATE FUNCTION delete_step_transitions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM workflow_step_transitions t USING gone g WHERE t.workflow_step_id = g.workflow_step_id;
  RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION delete_task_transitions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM task_transitions t USING gone g WHERE t.task_id = g.task_id;
  RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER workflow_steps_delete_transitions AFTER DELETE ON workflow_steps
  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION delete_step_transitions();
CREATE TRIGGER tasks_delete_transitions AFTER DELETE ON tasks
  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION delete_task_transitions();

-- +goose Down
DROP TRIGGER tasks_delete_transitions ON tasks;
DROP TRIGGER workflow_steps_delete_transitions ON workflow_steps;
DROP FUNCTION delete_task_transitions();
DROP FUNCTION delete_step_transitions();
ALTER TABLE task_transitions ADD CONSTRAINT task_transitions_task_id_fkey
  FOREIGN KEY (task_id) REFERENCES tasks ON DELETE CASCADE;
ALTER TABLE workflow_step_transitions ADD CONSTRAINT workflow_step_transitions_workflow_step_id_fkey
  FOREIGN KEY (workflow_step_id) REFERENCES workflow_steps ON DELETE CASCADE;
ALTER TABLE workflow_steps ADD CONSTRAINT workflow_steps_named_step_id_fkey
  FOREIGN KEY (named_step_id) REFERENCES named_steps;
ALTER TABLE tasks ADD CONSTRAINT tasks_named_task_id_fkey
  FOREIGN KEY (named_task_id) REFERENCES named_tasks;
