-- Extends a remote step's lease, fenced by the attempt, never past the
-- step's deadline (its claim plus its timeout, $4 ms; NULL for none): a
-- worker that keeps heartbeating cannot keep a step beyond its timeout, and
-- the rescue of expired leases then fails the attempt. The worker's row
-- records that it was seen.
WITH renewed AS (
  UPDATE workflow_steps w
  SET lease_expires_at = least(now() + $3::bigint * interval '1 millisecond',
                               w.last_attempted_at + $4::bigint * interval '1 millisecond')
  WHERE w.workflow_step_id = $1 AND w.attempts = $2 AND w.status = 'in_progress' AND w.queue <> ''
  RETURNING w.lease_owner, w.lease_expires_at
), seen AS (
  UPDATE workers k SET last_seen_at = now()
  FROM renewed r WHERE k.worker_id = r.lease_owner
)
SELECT lease_expires_at, lease_expires_at <= now() FROM renewed
