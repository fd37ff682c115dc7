-- rekey schema, version 1.
--
-- Portable SQL: the same text runs on SQLite and PostgreSQL. Column types are PostgreSQL's
-- names (UUID, TIMESTAMPTZ, BYTEA, BOOLEAN); SQLite accepts any type name and stores the values
-- sqlx binds (UUIDs as 16-byte blobs, times as RFC 3339 text, booleans as 0/1).
-- Statements end with ';' at the end of a line; the runner splits on that.
-- Times are UTC with microsecond precision. Ids are random UUIDs made by the application.

CREATE TABLE tenants (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- Outbound keystore. One row per entry ever stored; at most one current row per
-- (tenant, alias), the others are its history (archived_at, archived_reason set).
-- The private key is AES-256-GCM ciphertext under the KEK (never stored here).
CREATE TABLE keystore_entries (
    id UUID PRIMARY KEY,
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    alias TEXT NOT NULL,
    is_current BOOLEAN NOT NULL,
    key_nonce BYTEA NOT NULL,
    key_ciphertext BYTEA NOT NULL,
    kek_id TEXT NOT NULL,
    key_bits INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    subject TEXT NOT NULL,
    not_before TIMESTAMPTZ NOT NULL,
    not_after TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    archived_at TIMESTAMPTZ,
    archived_reason TEXT,
    CHECK (is_current OR archived_at IS NOT NULL)
);
CREATE UNIQUE INDEX keystore_entries_one_current ON keystore_entries (tenant_id, alias) WHERE is_current;
CREATE INDEX keystore_entries_by_alias ON keystore_entries (tenant_id, alias, created_at);
CREATE INDEX keystore_entries_by_expiry ON keystore_entries (not_after);

-- Certificate chain of an entry, end entity at position 0, DER.
CREATE TABLE keystore_chain_certs (
    entry_id UUID NOT NULL REFERENCES keystore_entries (id),
    position INTEGER NOT NULL,
    der BYTEA NOT NULL,
    PRIMARY KEY (entry_id, position)
);

CREATE TABLE flows (
    id UUID PRIMARY KEY,
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant_id, name)
);

-- A CMS/PKCS#7 signer step of a flow and its options.
CREATE TABLE signer_steps (
    id UUID PRIMARY KEY,
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    flow_id UUID NOT NULL REFERENCES flows (id),
    name TEXT NOT NULL,
    detached BOOLEAN NOT NULL,
    base64 BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (flow_id, name)
);

-- The Signer Parameters table of a step, ordered by position. The alias is a name, not a
-- foreign key: a row may list an alias that has no key yet (a prepared second alias).
CREATE TABLE signer_rows (
    id UUID PRIMARY KEY,
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    step_id UUID NOT NULL REFERENCES signer_steps (id),
    position INTEGER NOT NULL,
    alias TEXT NOT NULL,
    digest TEXT NOT NULL CHECK (digest IN ('sha256', 'sha384', 'sha512')),
    include_certs BOOLEAN NOT NULL,
    include_signing_time BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (step_id, alias),
    UNIQUE (step_id, position)
);
CREATE INDEX signer_rows_by_alias ON signer_rows (tenant_id, alias);

CREATE TABLE receivers (
    id UUID PRIMARY KEY,
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    verifies_multiple_keys BOOLEAN NOT NULL,
    accepts_multiple_signatures BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant_id, name)
);

-- Contacts of a receiver's administrators (who get its emails).
CREATE TABLE receiver_admin_emails (
    receiver_id UUID NOT NULL REFERENCES receivers (id),
    email TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (receiver_id, email)
);

-- The certificates a receiver trusts, as confirmed by its administrator.
CREATE TABLE receiver_trusted_certs (
    receiver_id UUID NOT NULL REFERENCES receivers (id),
    fingerprint TEXT NOT NULL,
    der BYTEA NOT NULL,
    subject TEXT NOT NULL,
    not_after TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (receiver_id, fingerprint)
);

CREATE TABLE users (
    id UUID PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL
);

-- Roles: tenant_admin and integration_developer are scoped to a tenant (scope_id = tenant_id,
-- receiver_id NULL); receiver_admin to a receiver (scope_id = receiver_id).
CREATE TABLE user_roles (
    user_id UUID NOT NULL REFERENCES users (id),
    role TEXT NOT NULL CHECK (role IN ('tenant_admin', 'integration_developer', 'receiver_admin')),
    scope_id UUID NOT NULL,
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    receiver_id UUID REFERENCES receivers (id),
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, role, scope_id),
    CHECK ((role = 'receiver_admin') = (receiver_id IS NOT NULL))
);
CREATE INDEX user_roles_by_scope ON user_roles (role, scope_id);

-- API tokens: only the SHA-256 of the token (hex) is stored.
CREATE TABLE api_tokens (
    id UUID PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    user_id UUID NOT NULL REFERENCES users (id),
    label TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);

-- Append-only, hash-chained audit log. hash = SHA-256(prev_hash, canonical fields); see
-- crates/store/src/audit.rs. seq starts at 1 and has no gaps.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    tenant_id UUID,
    subject TEXT NOT NULL,
    before_text TEXT NOT NULL,
    after_text TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

-- The chain head: one row, locked by every writer (FOR UPDATE on PostgreSQL; SQLite has one
-- writer), so that appends are serialised and the chain cannot fork.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- ---------------------------------------------------------------------------------------------
-- The engine's tables. Shapes for the workflow engine: every row has a JSON `state` (TEXT),
-- an optimistic-concurrency `version` (bump on every UPDATE ... WHERE version = old), and
-- `lease_owner`/`lease_until` so that several servers can claim work
-- (PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED; SQLite: one writer).

-- One renewal of one alias's key, following one procedure (workflows/*.toml).
CREATE TABLE renewals (
    id UUID PRIMARY KEY,
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    receiver_id UUID REFERENCES receivers (id),
    alias TEXT NOT NULL,
    procedure TEXT NOT NULL,
    status TEXT NOT NULL,
    state TEXT NOT NULL,
    version BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX renewals_by_tenant ON renewals (tenant_id, status);

-- The steps of a renewal, keyed by the procedure's step key (with the seed's step number).
CREATE TABLE renewal_steps (
    id UUID PRIMARY KEY,
    renewal_id UUID NOT NULL REFERENCES renewals (id),
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    step_key TEXT NOT NULL,
    seed_step TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    state TEXT NOT NULL,
    due_at TIMESTAMPTZ,
    done_by TEXT,
    done_at TIMESTAMPTZ,
    version BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (renewal_id, step_key)
);
CREATE INDEX renewal_steps_due ON renewal_steps (status, due_at);

-- Things to do at a time: reminders, escalations, window openings.
CREATE TABLE timers (
    id UUID PRIMARY KEY,
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    renewal_id UUID REFERENCES renewals (id),
    kind TEXT NOT NULL,
    due_at TIMESTAMPTZ NOT NULL,
    status TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    version BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX timers_due ON timers (status, due_at);

-- Mail written in the same transaction as the change that causes it; delivered by the
-- dispatcher. message_id is the stable Message-ID header, so a retry never sends twice.
CREATE TABLE outbox (
    id UUID PRIMARY KEY,
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    renewal_id UUID REFERENCES renewals (id),
    message_id TEXT NOT NULL UNIQUE,
    recipients TEXT NOT NULL,
    subject TEXT NOT NULL,
    state TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    last_error TEXT,
    version BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    sent_at TIMESTAMPTZ
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

-- Single-use, expiring tokens carried by links in emails; only their SHA-256 (hex) is stored.
CREATE TABLE link_tokens (
    token_sha256 TEXT PRIMARY KEY,
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    renewal_step_id UUID REFERENCES renewal_steps (id),
    user_id UUID REFERENCES users (id),
    purpose TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL
);
