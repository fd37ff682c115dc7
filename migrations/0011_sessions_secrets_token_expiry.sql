-- Web sessions, shared by every instance on the database: a restart keeps people signed in and
-- a session started on one instance is valid on another. Only the SHA-256 of the session id
-- (the cookie's value) is stored; `csrf` is the token of the session's own forms. Rows past
-- `expires_at` are refused and pruned.
CREATE TABLE web_sessions (
    id_sha256 TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    csrf TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX web_sessions_email ON web_sessions (email);

-- Secrets every instance must share, by name ('link_csrf': what link pages' CSRF tokens are
-- derived from). Written once by the first instance to start; the primary key makes a second
-- instance starting at the same time keep the first one's.
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    secret BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

-- When an API token stops working (NULL: tokens made before lifetimes existed never expire).
ALTER TABLE api_tokens ADD COLUMN expires_at TIMESTAMPTZ;
