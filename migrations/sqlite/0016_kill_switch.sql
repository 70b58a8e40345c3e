-- The kill switch's state: while engaged (after `revoke-all`), nothing is
-- granted until an administrator releases it. One row, always present, so
-- every decision can lock it (see store/kill_switch.rs).
CREATE TABLE kill_switch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    engaged INTEGER NOT NULL DEFAULT 0,
    engaged_at BIGINT,
    engaged_by TEXT,
    reason TEXT
);
INSERT INTO kill_switch (id, engaged) VALUES (1, 0);
