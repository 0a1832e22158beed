-- Maintenance by an elected leader: the lease it holds, the index retention
-- walks, and storage settings for tables that change all day.
--
-- Leadership is a row with an expiry, not a session advisory lock: a lock
-- dies with its connection but can also outlive a replica that hangs, and
-- pooled connections (PgBouncer in transaction mode) cannot hold one. The
-- holder renews the row every third of its TTL; any replica takes it over
-- once it has expired, so maintenance resumes within one TTL of a crash.
--
-- Storage. workflow_steps and tasks are updated several times in their life
-- and already keep free space on each page (fillfactor 70, migration
-- 00001) so that updates touching no indexed column stay on their page.
-- Autovacuum's defaults wait until 20 % of a table is dead before
-- vacuuming and 10 % has changed before analysing: on a table of ten
-- million steps that is two million dead rows in the ready-queue and lease
-- indexes, and statistics hours out of date. These tables are vacuumed at
-- 2 % and analysed at 1 %, with the cost limit raised so one pass finishes
-- between bursts. The append-only transition tables are vacuumed after 10 %
-- inserts (their visibility map then stays current for index-only scans).

-- +goose Up
CREATE TABLE leader_leases (
  name        text PRIMARY KEY,
  holder      text NOT NULL,
  acquired_at timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL
);

-- Finished tasks by when they finished: retention deletes the oldest first.
CREATE INDEX tasks_finished ON tasks (completed_at)
  WHERE status IN ('complete', 'error', 'cancelled', 'resolved_manually');

ALTER TABLE workflow_steps SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.01,
                                autovacuum_vacuum_cost_limit = 2000);
ALTER TABLE tasks SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.01,
                       autovacuum_vacuum_cost_limit = 2000);
ALTER TABLE workflow_step_transitions SET (autovacuum_vacuum_insert_scale_factor = 0.1);
ALTER TABLE task_transitions SET (autovacuum_vacuum_insert_scale_factor = 0.1);

-- +goose Down
ALTER TABLE task_transitions RESET (autovacuum_vacuum_insert_scale_factor);
ALTER TABLE workflow_step_transitions RESET (autovacuum_vacuum_insert_scale_factor);
ALTER TABLE tasks RESET (autovacuum_vacuum_scale_factor, autovacuum_analyze_scale_factor, autovacuum_vacuum_cost_limit);
ALTER TABLE workflow_steps RESET (autovacuum_vacuum_scale_factor, autovacuum_analyze_scale_factor, autovacuum_vacuum_cost_limit);
DROP INDEX IF EXISTS tasks_finished;
DROP TABLE IF EXISTS leader_leases;
