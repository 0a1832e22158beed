-- Sent inside the registering transaction: listeners hear of the change
-- only once it is committed, and never of one that rolled back.
SELECT pg_notify($1, $2);
