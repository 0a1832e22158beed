-- Lets the current transaction commit without waiting for its WAL to reach
-- disk (for records whose loss in a database crash is acceptable: see the
-- callers). Ends with the transaction.
SELECT set_config('synchronous_commit', 'off', true)
