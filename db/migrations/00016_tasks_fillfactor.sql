-- Room on every task page for the engine's counter updates to be HOT.
-- Each flush that finishes steps of a task decrements unfinished_steps on
-- its row, several times per task (once per wave of its DAG). No indexed
-- column changes, so the update could skip every index of the table
-- (primary key, created_at, named_task_id, the unfinished-status index…),
-- but only when the new row version fits on the same page: with the
-- default fillfactor of 100 task pages are full when written, and every
-- decrement inserted an entry into each index. Workflow steps were created
-- with fillfactor 70 for the same reason. Pages written before this
-- migration keep their fill until rewritten (VACUUM FULL, pg_repack).

-- +goose Up
ALTER TABLE tasks SET (fillfactor = 70);

-- +goose Down
ALTER TABLE tasks RESET (fillfactor);
