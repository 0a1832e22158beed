-- Serialises registrations and deletions of one namespace/name/version for
-- the rest of the transaction, so concurrent registrations of the same
-- template see each other's row instead of racing for the unique index.
SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0));
