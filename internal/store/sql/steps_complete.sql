-- Completes finished attempts. Only rows still in_progress at the same
-- attempt change (the attempt is the fencing token): a replica that lost its
-- lease and reports late changes nothing. $2 maps each step id (text) to
-- [attempt, results].
--
-- One statement on one table, no join: the rows are found by the primary
-- key's scan of the id array, which visits the ids in sorted order, and each
-- row is locked by being updated as the scan reaches it. So concurrent
-- flushes lock the rows they share in id order and cannot deadlock on each
-- other (unsorted, two replicas' flushes locked shared rows in opposite
-- orders and waited a deadlock_timeout), and no plan can walk the table:
-- with scans switched off (hot_planner.sql) the id array on the primary key
-- is the only way in. A row's inputs come from $2 by key (a binary search
-- in the jsonb object). Not locked first and updated after: a lock is a
-- write of its own (the tuple's lock bits and a WAL record).
-- "status || ''" keeps the state test from matching the lease index's
-- predicate: a plan made on statistics taken while few steps ran would
-- otherwise read that index (every running step) instead of probing the
-- primary key; with 3,000 running steps a flush took seconds and every
-- replica stalled behind it (plan_test.go).
WITH done AS (
  UPDATE workflow_steps w
  SET status = 'complete', results = $2::jsonb -> w.workflow_step_id::text -> 1, processed_at = now(),
      lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
  WHERE w.workflow_step_id = ANY ($1::uuid[]) AND w.status || '' = 'in_progress'
    AND w.attempts = ($2::jsonb -> w.workflow_step_id::text ->> 0)::int
  RETURNING w.workflow_step_id, w.task_id, w.attempts
), transitions AS (
  INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, metadata)
  SELECT workflow_step_id, task_id, 'in_progress', 'complete', jsonb_build_object('attempt', attempts, 'replica', $3::text)
  FROM done
)
SELECT workflow_step_id, task_id, attempts FROM done
