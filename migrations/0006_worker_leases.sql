-- Whole jobs that one instance at a time runs, such as a pass of the expiry watch. A job's row
-- is claimed by the same conditional UPDATE as a timer or an outbox row (`lease::claim`), so
-- every worker leases one way. The row is created by the first claim (`id` names the job).
CREATE TABLE worker_leases (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    due_at TIMESTAMPTZ NOT NULL,
    lease_owner TEXT,
    lease_until TIMESTAMPTZ,
    version BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL
);
