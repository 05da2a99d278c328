-- An unchanged poll used to rewrite last_seen_at on every profile of the
-- customer: twenty rows of the largest table, read back from disk and
-- written through the WAL, for a value every listed profile shares. That
-- value now lives once per customer (customers.last_listed_at), and
-- `profiles` becomes a view that shows exactly the columns it always had,
-- with the same values, so queries written against it keep working.
--
-- The customer's poll bookkeeping also moves into a trigger on `polls`, so
-- that an unchanged poll is a single INSERT and can never leave its row
-- without the customer's state, or the reverse.

-- When the last successful poll that returned a non-empty list finished:
-- the last_seen_at of every profile that list held.
ALTER TABLE customers ADD COLUMN last_listed_at TEXT;

UPDATE customers
SET last_listed_at = (
    SELECT max(p.last_seen_at)
    FROM profiles AS p
    WHERE p.customer_id = customers.customer_id AND p.missing_polls = 0
);

-- The latest snapshot, as scanwatch writes it.
CREATE TABLE profile_snapshot (
    customer_id   TEXT    NOT NULL REFERENCES customers (customer_id),
    profile_id    TEXT    NOT NULL,
    profile_name  TEXT,
    scan_mode     INTEGER,
    modified_time TEXT,
    raw_json      TEXT    NOT NULL,
    first_seen_at TEXT    NOT NULL,
    -- While the profile is missing from the lists (missing_polls > 0), when
    -- it was last listed; NULL while it is listed, because then that is the
    -- customer's last_listed_at.
    seen_until    TEXT,
    missing_polls INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (customer_id, profile_id),
    CHECK ((missing_polls = 0) = (seen_until IS NULL))
) WITHOUT ROWID;

INSERT INTO profile_snapshot (customer_id, profile_id, profile_name, scan_mode,
    modified_time, raw_json, first_seen_at, seen_until, missing_polls)
SELECT customer_id, profile_id, profile_name, scan_mode, modified_time, raw_json,
       first_seen_at,
       CASE WHEN missing_polls > 0 THEN last_seen_at END,
       missing_polls
FROM profiles;

DROP VIEW current_profiles;
DROP TABLE profiles;

CREATE VIEW profiles AS
SELECT s.customer_id,
       s.profile_id,
       s.profile_name,
       s.scan_mode,
       s.modified_time,
       s.raw_json,
       s.first_seen_at,
       coalesce(s.seen_until, c.last_listed_at) AS last_seen_at,
       s.missing_polls
FROM profile_snapshot AS s
JOIN customers AS c ON c.customer_id = s.customer_id;

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
       coalesce(p.seen_until, cu.last_listed_at) AS last_seen_at
FROM profile_snapshot AS p
LEFT JOIN customers AS cu ON cu.customer_id = p.customer_id;

-- Every finished poll updates its customer's bookkeeping, whoever wrote it.
-- The customer's row exists already: polls.customer_id refers to it.
CREATE TRIGGER polls_keep_customer_state
AFTER INSERT ON polls
BEGIN
    UPDATE customers
    SET first_polled_at      = coalesce(first_polled_at, NEW.finished_at),
        last_polled_at       = NEW.finished_at,
        last_success_at      = CASE NEW.outcome WHEN 'ok' THEN NEW.finished_at
                                   ELSE last_success_at END,
        consecutive_failures = CASE NEW.outcome WHEN 'ok' THEN 0
                                   ELSE consecutive_failures + 1 END,
        last_error           = NEW.error,
        last_listed_at       = CASE WHEN NEW.outcome = 'ok' AND NEW.profiles > 0
                                   THEN NEW.finished_at ELSE last_listed_at END
    WHERE customer_id = NEW.customer_id;
END;
