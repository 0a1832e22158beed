-- Foreign keys off the task-create path.
--
-- A task create writes the task, its steps and their edges in ONE
-- statement (internal/store/sql/task_create.sql), and nothing else ever
-- writes steps or edges. The keys workflow_steps → tasks and
-- workflow_step_edges → workflow_steps (both ends) were checked by a
-- trigger per row at the end of that statement: seven lookups for a
-- three-step chain, measured at about half the statement's time
-- (auto_explain, log_triggers). They cannot fail — the statement writes
-- the rows they reference — so they protected only the cascade on delete
-- (retention deletes tasks). Statement triggers keep that cascade, as
-- migration 00009 did for transitions: deleting tasks deletes their steps,
-- and deleting steps deletes their edges (and, by 00009's trigger, their
-- transitions).

-- +goose Up
ALTER TABLE workflow_steps DROP CONSTRAINT workflow_steps_task_id_fkey;
ALTER TABLE workflow_step_edges DROP CONSTRAINT workflow_step_edges_from_step_id_fkey;
ALTER TABLE workflow_step_edges DROP CONSTRAINT workflow_step_edges_to_step_id_fkey;

-- +goose StatementBegin
CREATE FUNCTION delete_task_steps() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM workflow_steps s USING gone g WHERE s.task_id = g.task_id;
  RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION delete_step_edges() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- Both ends of an edge are steps of one task, which go together; either
  -- end is looked up by an index (the primary key's prefix, or _to).
  DELETE FROM workflow_step_edges e USING gone g WHERE e.from_step_id = g.workflow_step_id;
  DELETE FROM workflow_step_edges e USING gone g WHERE e.to_step_id = g.workflow_step_id;
  RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER tasks_delete_steps AFTER DELETE ON tasks
  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION delete_task_steps();
CREATE TRIGGER workflow_steps_delete_edges AFTER DELETE ON workflow_steps
  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION delete_step_edges();

-- +goose Down
DROP TRIGGER workflow_steps_delete_edges ON workflow_steps;
DROP TRIGGER tasks_delete_steps ON tasks;
DROP FUNCTION delete_step_edges();
DROP FUNCTION delete_task_steps();
ALTER TABLE workflow_step_edges ADD CONSTRAINT workflow_step_edges_to_step_id_fkey
  FOREIGN KEY (to_step_id) REFERENCES workflow_steps ON DELETE CASCADE;
ALTER TABLE workflow_step_edges ADD CONSTRAINT workflow_step_edges_from_step_id_fkey
  FOREIGN KEY (from_step_id) REFERENCES workflow_steps ON DELETE CASCADE;
ALTER TABLE workflow_steps ADD CONSTRAINT workflow_steps_task_id_fkey
  FOREIGN KEY (task_id) REFERENCES tasks ON DELETE CASCADE;
