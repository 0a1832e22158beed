-- Claims up to $2 runnable steps of queue $1 for replica $3 in ONE
-- statement: pick them in priority and runnable order, skipping rows other
-- replicas are claiming (SKIP LOCKED: claimers never wait on each other),
-- mark them in_progress with a lease, count the attempt, record the
-- transitions, and move tasks to in_progress on their first claim.
-- The result carries what the handler needs, parents' results included.
-- Rows are always located by key (= ANY, or lookups kept apart with
-- OFFSET 0) so the plan stays index-driven even on tables that grew faster
-- than autovacuum analyses them.
WITH candidates AS (
  SELECT workflow_step_id, runnable_at
  FROM workflow_steps
  WHERE queue = $1 AND status = 'pending' AND runnable_at IS NOT NULL AND runnable_at <= now()
  ORDER BY priority DESC, runnable_at, workflow_step_id
  LIMIT $2
  FOR UPDATE SKIP LOCKED
), claimed AS (
  UPDATE workflow_steps w
  SET status = 'in_progress', attempts = w.attempts + 1, lease_owner = $3,
      lease_expires_at = now() + $4::bigint * interval '1 millisecond',
      last_attempted_at = now(), runnable_at = NULL, updated_at = now()
  FROM candidates c
  WHERE w.workflow_step_id = c.workflow_step_id
  RETURNING w.workflow_step_id, w.task_id, w.name, w.handler, w.attempts, w.retry_base, w.retry_limit,
            w.inputs, w.lease_expires_at, c.runnable_at AS ready_at
), step_transitions AS (
  INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, metadata)
  SELECT workflow_step_id, task_id, 'pending', 'in_progress', jsonb_build_object('attempt', attempts, 'replica', $3::text)
  FROM claimed
), started AS (
  -- A join on the key, not "= ANY (ARRAY(…))": with that, a stale estimate
  -- chose to scan every pending task and filter them against the array.
  UPDATE tasks t SET status = 'in_progress', started_at = coalesce(t.started_at, now()), updated_at = now()
  FROM (SELECT DISTINCT task_id FROM claimed) c
  WHERE t.task_id = c.task_id AND t.status = 'pending'
  RETURNING t.task_id
), task_transitions AS (
  INSERT INTO task_transitions (task_id, from_state, to_state, metadata)
  SELECT task_id, 'pending', 'in_progress', jsonb_build_object('replica', $3::text) FROM started
)
SELECT c.workflow_step_id, c.task_id, t.named_task_id, t.namespace_name, t.task_name, t.task_version, c.name,
       c.handler, c.attempts, c.inputs, t.context, coalesce(t.correlation_id, ''), coalesce(t.traceparent, ''),
       c.lease_expires_at,
       (SELECT jsonb_object_agg(p.name, p.results)
        FROM workflow_step_edges e,
             -- OFFSET 0 keeps this a per-edge primary-key lookup: flattened
             -- into a join, a table without statistics gets a hash join
             -- over a scan of every step, once per claimed row.
             LATERAL (SELECT name, results FROM workflow_steps p
                      WHERE p.workflow_step_id = e.from_step_id OFFSET 0) p
        WHERE e.to_step_id = c.workflow_step_id) AS parent_results,
       EXISTS (SELECT 1 FROM started s WHERE s.task_id = c.task_id) AS task_started,
       c.ready_at
FROM claimed c, LATERAL (SELECT * FROM tasks t WHERE t.task_id = c.task_id OFFSET 0) t
