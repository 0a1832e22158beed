-- Tasks by status. It reads the whole table: only the elected leader runs
-- it, once per maintenance interval, never a metrics scrape.
SELECT status, count(*) FROM tasks GROUP BY status
