-- Cancels the unfinished descendants of a task ($1) or the child of one
-- step ($2) and, recursively, their own children: tasks and their
-- unfinished steps, with transitions, in id order. Each cancelled task is
-- announced on the cancel channel ($5) so that replicas stop its running
-- handlers and remote workers learn of it at their next heartbeat.
WITH RECURSIVE tree AS (
  SELECT t.task_id FROM tasks t
  WHERE ($1::uuid IS NOT NULL AND t.parent_task_id = $1::uuid)
     OR ($2::uuid IS NOT NULL AND t.parent_step_id = $2::uuid)
  UNION
  SELECT t.task_id FROM tasks t JOIN tree ON t.parent_task_id = tree.task_id
), locked_tasks AS (
  SELECT t.task_id, t.status FROM tasks t
  WHERE t.task_id IN (SELECT task_id FROM tree) AND t.status IN ('pending', 'in_progress', 'error')
  ORDER BY t.task_id
  FOR UPDATE OF t
), locked_steps AS (
  SELECT w.workflow_step_id, w.status FROM workflow_steps w
  WHERE w.task_id IN (SELECT task_id FROM locked_tasks) AND w.status IN ('pending', 'in_progress', 'error')
  ORDER BY w.workflow_step_id
  FOR UPDATE OF w
), cancelled_steps AS (
  UPDATE workflow_steps w
  SET status = 'cancelled', runnable_at = NULL, lease_owner = NULL, lease_expires_at = NULL,
      processed_at = now(), updated_at = now()
  FROM locked_steps l WHERE w.workflow_step_id = l.workflow_step_id
  RETURNING w.workflow_step_id, w.task_id, l.status AS from_state, w.attempts
), step_tr AS (
  INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, metadata, actor)
  SELECT workflow_step_id, task_id, from_state, 'cancelled', $3::jsonb, $4 FROM cancelled_steps
), cancelled_tasks AS (
  UPDATE tasks t
  SET status = 'cancelled', completed_at = now(), updated_at = now()
  FROM locked_tasks l WHERE t.task_id = l.task_id
  RETURNING t.task_id, l.status AS from_state, t.runs
), task_tr AS (
  INSERT INTO task_transitions (task_id, from_state, to_state, metadata, actor)
  SELECT task_id, from_state, 'cancelled', $3::jsonb, $4 FROM cancelled_tasks
), notified AS (
  SELECT pg_notify($5, task_id::text) FROM cancelled_tasks
)
SELECT task_id, NULL::uuid AS step_id, from_state, 0 AS attempts, (SELECT count(*) FROM notified) AS n, runs
FROM cancelled_tasks
UNION ALL
SELECT task_id, workflow_step_id, from_state, attempts, 0, 0 FROM cancelled_steps
