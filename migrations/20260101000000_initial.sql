-- scanwatch's schema. It is a public interface: users query it with sqlite3,
-- so columns are only ever added, never renamed or removed.
-- Times are UTC text in one fixed-width form (2025-09-11T03:19:14.000000Z),
-- so text order is time order. IDs are lower-case.

CREATE TABLE customers (
    customer_id          TEXT    PRIMARY KEY NOT NULL,
    name                 TEXT,
    first_polled_at      TEXT,
    last_polled_at       TEXT,
    last_success_at      TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_error           TEXT,
    empty_streak         INTEGER NOT NULL DEFAULT 0,
    -- SHA-256 of the last accepted list, set only while the snapshot mirrors
    -- it exactly; lets an unchanged poll commit without a full diff.
    list_hash            BLOB
);

CREATE TABLE profiles (
    customer_id   TEXT    NOT NULL REFERENCES customers (customer_id),
    profile_id    TEXT    NOT NULL,
    profile_name  TEXT,
    scan_mode     INTEGER,
    modified_time TEXT,
    raw_json      TEXT    NOT NULL,
    first_seen_at TEXT    NOT NULL,
    last_seen_at  TEXT    NOT NULL,
    missing_polls INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (customer_id, profile_id)
) WITHOUT ROWID;

CREATE TABLE polls (
    poll_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT    NOT NULL REFERENCES customers (customer_id),
    started_at  TEXT    NOT NULL,
    finished_at TEXT    NOT NULL,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('ok', 'failed')),
    http_status INTEGER,
    error       TEXT,
    profiles    INTEGER,
    added       INTEGER NOT NULL DEFAULT 0,
    changed     INTEGER NOT NULL DEFAULT 0,
    removed     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE profile_changes (
    change_id         INTEGER PRIMARY KEY AUTOINCREMENT,
    poll_id           INTEGER NOT NULL REFERENCES polls (poll_id),
    customer_id       TEXT    NOT NULL REFERENCES customers (customer_id),
    profile_id        TEXT    NOT NULL,
    kind              TEXT    NOT NULL CHECK (kind IN ('added', 'changed', 'removed')),
    baseline          INTEGER NOT NULL DEFAULT 0 CHECK (baseline IN (0, 1)),
    detected_at       TEXT    NOT NULL,
    profile_name      TEXT,
    scan_mode         INTEGER,
    modified_time     TEXT,
    old_profile_name  TEXT,
    old_scan_mode     INTEGER,
    old_modified_time TEXT,
    changed_fields    TEXT,
    raw_json          TEXT,
    UNIQUE (poll_id, profile_id)
);

CREATE INDEX profile_changes_by_customer
    ON profile_changes (customer_id, change_id);
CREATE INDEX profile_changes_by_profile
    ON profile_changes (profile_id, change_id);
CREATE INDEX profile_changes_by_time
    ON profile_changes (detected_at);

-- The change log is append-only: history that can be edited is not history.
CREATE TRIGGER profile_changes_no_update
BEFORE UPDATE ON profile_changes
BEGIN
    SELECT RAISE(ABORT, 'profile_changes is append-only');
END;

CREATE TRIGGER profile_changes_no_delete
BEFORE DELETE ON profile_changes
BEGIN
    SELECT RAISE(ABORT, 'profile_changes is append-only');
END;

CREATE VIEW change_history AS
SELECT c.change_id,
       c.detected_at,
       c.customer_id,
       cu.name AS customer_name,
       c.profile_id,
       c.kind,
       c.baseline,
       c.profile_name,
       c.scan_mode,
       CASE c.scan_mode
           WHEN 0 THEN 'Express'
           WHEN 1 THEN 'Advanced'
           ELSE CAST(c.scan_mode AS TEXT)
       END AS scan_mode_name,
       c.modified_time,
       c.old_profile_name,
       c.old_scan_mode,
       c.old_modified_time,
       c.changed_fields,
       c.poll_id
FROM profile_changes AS c
LEFT JOIN customers AS cu ON cu.customer_id = c.customer_id;

CREATE VIEW current_profiles AS
SELECT p.customer_id,
       cu.name AS customer_name,
       p.profile_id,
       p.profile_name,
       p.scan_mode,
       CASE p.scan_mode
           WHEN 0 THEN 'Express'
           WHEN 1 THEN 'Advanced'
           ELSE CAST(p.scan_mode AS TEXT)
       END AS scan_mode_name,
       p.modified_time,
       p.first_seen_at,
       p.last_seen_at
FROM profiles AS p
LEFT JOIN customers AS cu ON cu.customer_id = p.customer_id;
