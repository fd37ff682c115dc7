-- `renewal_steps` was never written: a renewal's steps live in its JSON state (`renewals.state`),
-- which `rekey renewal show` and the API read, and the audit log records every step's
-- transition. The table goes, and with it `link_tokens.renewal_step_id`, which referred to it
-- and was always NULL (a link's task is in `purpose`). `link_tokens` is rebuilt without the
-- column, the portable way (SQLite cannot drop a column that carries a foreign key).
CREATE TABLE link_tokens_new (
    token_sha256 TEXT PRIMARY KEY,
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    user_id UUID REFERENCES users (id),
    purpose TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL
);
INSERT INTO link_tokens_new (token_sha256, tenant_id, user_id, purpose, expires_at, used_at, created_at)
    SELECT token_sha256, tenant_id, user_id, purpose, expires_at, used_at, created_at FROM link_tokens;
DROP TABLE link_tokens;
ALTER TABLE link_tokens_new RENAME TO link_tokens;
DROP TABLE renewal_steps;
