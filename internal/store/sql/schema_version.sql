-- The schema version goose has applied: goose inserts a row per applied
-- migration and deletes it when the migration is reverted.
SELECT coalesce(max(version_id), 0)::bigint FROM goose_db_version
