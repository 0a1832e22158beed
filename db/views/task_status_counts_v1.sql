-- Task counts by namespace, name, version and status: what /tasker/health/status
-- and dashboards summarise. A plain view: it is read rarely and cached by the
-- caller, so it does not need to be materialised.
CREATE OR REPLACE VIEW task_status_counts AS
SELECT t.namespace_name,
       t.task_name,
       t.task_version,
       t.status,
       count(*)::bigint AS task_count
FROM tasks t
GROUP BY t.namespace_name, t.task_name, t.task_version, t.status;
