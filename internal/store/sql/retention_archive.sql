-- retention_delete.sql with TASKER_ARCHIVE=table: the same batch, and in
-- the same statement (so in the same transaction, and from the same
-- snapshot) each doomed task's rows are copied to the archive tables of
-- migration 00012 before the delete takes them away. Every part of the
-- statement sees the rows as they were before it started, so the copies
-- read what the delete removes.
WITH doomed AS (
  SELECT task_id FROM tasks
  WHERE status = ANY ($1::text[]) AND completed_at < now() - $2::bigint * interval '1 millisecond'
  ORDER BY completed_at
  LIMIT $3
  FOR UPDATE SKIP LOCKED
), archived_tasks AS (
  INSERT INTO tasks_archive SELECT t.* FROM tasks t JOIN doomed d USING (task_id)
), steps AS (
  SELECT s.* FROM doomed d, LATERAL (SELECT * FROM workflow_steps s WHERE s.task_id = d.task_id OFFSET 0) s
), archived_steps AS (
  INSERT INTO workflow_steps_archive SELECT * FROM steps
), archived_edges AS (
  -- Edges and step transitions are found through their steps' keys (the
  -- indexes they have), not by task id (which edges are not indexed on).
  INSERT INTO workflow_step_edges_archive
  SELECT e.* FROM steps s JOIN workflow_step_edges e ON e.to_step_id = s.workflow_step_id
), archived_task_transitions AS (
  INSERT INTO task_transitions_archive SELECT tt.* FROM task_transitions tt JOIN doomed d USING (task_id)
), archived_step_transitions AS (
  INSERT INTO workflow_step_transitions_archive
  SELECT st.* FROM steps s JOIN workflow_step_transitions st ON st.workflow_step_id = s.workflow_step_id
)
DELETE FROM tasks t USING doomed d WHERE t.task_id = d.task_id
