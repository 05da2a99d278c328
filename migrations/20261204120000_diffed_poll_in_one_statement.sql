-- A poll whose list changed used to be written as six or seven statements
-- (the customer, the snapshot's puts, missing profiles and deletions, the
-- poll, the changes, the commit). sqlx runs SQLite on a worker thread of its
-- own and sends each statement's result back separately, and those
-- hand-offs between threads cost more CPU than the statements themselves.
-- The store now inserts one row into `poll_writes`, and this trigger makes
-- the same writes, in the same order, inside that one statement.
--
-- `poll_writes` holds nothing and is not for reading: it is where scanwatch
-- hands a diffed poll to the database.
--
-- Its columns:
--   poll_id       the new poll's ID, read under the write lock just before
--   customer_id, name, empty_streak, list_hash
--                 the customer's row after this poll (list_hash NULL while
--                 the snapshot does not mirror the list)
--   started_at, finished_at, http_status, profiles, added, changed, removed
--                 the poll's row
--   listed        the customer's last_listed_at before this poll: the
--                 seen_until of a profile that goes missing now
--   puts          JSON array of [profile_id, profile_name, scan_mode,
--                 modified_time, raw_json] to insert or refresh
--   missing       JSON array of [profile_id, missing_polls]
--   deletes       JSON array of profile IDs
--   changes       JSON array of [profile_id, kind, baseline, profile_name,
--                 scan_mode, modified_time, old_profile_name, old_scan_mode,
--                 old_modified_time, changed_fields, raw_json], in order
CREATE VIEW poll_writes AS
SELECT NULL AS poll_id,
       NULL AS customer_id,
       NULL AS name,
       NULL AS empty_streak,
       NULL AS list_hash,
       NULL AS started_at,
       NULL AS finished_at,
       NULL AS http_status,
       NULL AS profiles,
       NULL AS added,
       NULL AS changed,
       NULL AS removed,
       NULL AS listed,
       NULL AS puts,
       NULL AS missing,
       NULL AS deletes,
       NULL AS changes
WHERE 0;

CREATE TRIGGER poll_writes_apply
INSTEAD OF INSERT ON poll_writes
BEGIN
    -- The customer first: the snapshot and the poll refer to it.
    INSERT INTO customers (customer_id, name, empty_streak, list_hash)
    VALUES (NEW.customer_id, NEW.name, NEW.empty_streak, NEW.list_hash)
    ON CONFLICT (customer_id) DO UPDATE SET
        name         = excluded.name,
        empty_streak = excluded.empty_streak,
        list_hash    = excluded.list_hash;

    INSERT INTO profile_snapshot (customer_id, profile_id, profile_name, scan_mode,
        modified_time, raw_json, first_seen_at, seen_until, missing_polls)
    SELECT NEW.customer_id, p.value ->> 0, p.value ->> 1, p.value ->> 2,
           p.value ->> 3, p.value ->> 4, NEW.finished_at, NULL, 0
    FROM json_each(NEW.puts) AS p
    WHERE true
    ON CONFLICT (customer_id, profile_id) DO UPDATE SET
        profile_name  = excluded.profile_name,
        scan_mode     = excluded.scan_mode,
        modified_time = excluded.modified_time,
        raw_json      = excluded.raw_json,
        seen_until    = NULL,
        missing_polls = 0;

    UPDATE profile_snapshot
    SET missing_polls = m.value ->> 1,
        seen_until    = coalesce(seen_until, NEW.listed)
    FROM json_each(NEW.missing) AS m
    WHERE profile_snapshot.customer_id = NEW.customer_id
      AND profile_snapshot.profile_id = m.value ->> 0;

    DELETE FROM profile_snapshot
    WHERE customer_id = NEW.customer_id
      AND profile_id IN (SELECT value FROM json_each(NEW.deletes));

    -- Its customer's bookkeeping follows (polls_keep_customer_state).
    INSERT INTO polls (poll_id, customer_id, started_at, finished_at, outcome,
        http_status, profiles, added, changed, removed)
    VALUES (NEW.poll_id, NEW.customer_id, NEW.started_at, NEW.finished_at, 'ok',
        NEW.http_status, NEW.profiles, NEW.added, NEW.changed, NEW.removed);

    INSERT INTO profile_changes (poll_id, customer_id, profile_id, kind, baseline,
        detected_at, profile_name, scan_mode, modified_time, old_profile_name,
        old_scan_mode, old_modified_time, changed_fields, raw_json)
    SELECT NEW.poll_id, NEW.customer_id, c.value ->> 0, c.value ->> 1,
           c.value ->> 2, NEW.finished_at, c.value ->> 3, c.value ->> 4,
           c.value ->> 5, c.value ->> 6, c.value ->> 7, c.value ->> 8,
           c.value ->> 9, c.value ->> 10
    FROM json_each(NEW.changes) AS c
    ORDER BY c.key;
END;
