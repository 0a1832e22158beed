-- Archive tables for TASKER_ARCHIVE=table: retention copies a task, its
-- steps, edges and transitions here in the statement that deletes them, so
-- an operator can keep history out of the engine's hot tables (and move it
-- elsewhere, or drop old partitions of it, on their own schedule).
--
-- Each archive table has exactly its source's columns, in the same order
-- (CREATE TABLE … LIKE, with no constraints, identities or indexes: rows
-- are written once by retention and read by people), so retention copies
-- with SELECT *. A migration that adds a column to a source table adds it
-- to the archive table too; a test compares the column lists of every
-- pair and fails when they differ.
--
-- One index per table, on the task id, so "what happened to task X" stays
-- answerable; nothing else reads these tables.

-- +goose Up
CREATE TABLE tasks_archive (LIKE tasks);
CREATE TABLE workflow_steps_archive (LIKE workflow_steps);
CREATE TABLE workflow_step_edges_archive (LIKE workflow_step_edges);
CREATE TABLE task_transitions_archive (LIKE task_transitions);
CREATE TABLE workflow_step_transitions_archive (LIKE workflow_step_transitions);

CREATE INDEX tasks_archive_task ON tasks_archive (task_id);
CREATE INDEX workflow_steps_archive_task ON workflow_steps_archive (task_id);
CREATE INDEX workflow_step_edges_archive_task ON workflow_step_edges_archive (task_id);
CREATE INDEX task_transitions_archive_task ON task_transitions_archive (task_id);
CREATE INDEX workflow_step_transitions_archive_task ON workflow_step_transitions_archive (task_id);

-- +goose Down
DROP TABLE workflow_step_transitions_archive;
DROP TABLE task_transitions_archive;
DROP TABLE workflow_step_edges_archive;
DROP TABLE workflow_steps_archive;
DROP TABLE tasks_archive;
