-- Completes finished attempts. Only rows still in_progress at the same
-- attempt change (the attempt is the fencing token): a replica that lost its
-- lease and reports late changes nothing. Rows are updated, and so locked,
-- in id order, so concurrent flushes cannot deadlock on each other: the
-- input sorted, each row then found by one primary-key probe as the update
-- reaches it. (Unsorted, two replicas' flushes locked shared rows in
-- opposite orders and waited a deadlock_timeout. Either join order the
-- planner may pick walks the rows in id order: the sorted input, or the
-- primary key.) The rows are not locked first and updated after: a lock is
-- a write of its own (the tuple's lock bits and a WAL record), and with one
-- per update, as here, in the release of children and in the task counts,
-- a step cost PostgreSQL 5-7 % more CPU (taskerd bench, alternating runs).
-- "status || ''" keeps the state test from matching the lease index's
-- predicate: otherwise a plan made on statistics taken while few steps ran
-- reads that index (every running step) for each input row instead of one
-- primary-key probe, or even drives the join from it (out of id order);
-- with 3,000 running steps a flush took seconds and every replica stalled
-- behind it (plan_test.go).
WITH i AS (
  SELECT * FROM unnest($1::uuid[], $2::int[], $3::jsonb[]) AS i(id, attempt, results) ORDER BY id
), done AS (
  UPDATE workflow_steps w
  SET status = 'complete', results = i.results, processed_at = now(),
      lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
  FROM i
  WHERE w.workflow_step_id = i.id AND w.status || '' = 'in_progress' AND w.attempts = i.attempt
  RETURNING w.workflow_step_id, w.task_id, w.attempts
), transitions AS (
  INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, metadata)
  SELECT workflow_step_id, task_id, 'in_progress', 'complete', jsonb_build_object('attempt', attempts, 'replica', $4::text)
  FROM done
)
SELECT workflow_step_id, task_id, attempts FROM done
