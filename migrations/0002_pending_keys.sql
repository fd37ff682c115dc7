-- Keys a renewal generated (or whose CSR awaits a CA) that are not in the keystore yet.
-- The private key is encrypted like keystore entries: AES-256-GCM under the KEK, bound to the
-- tenant, the target alias and this row's id.
CREATE TABLE pending_keys (
    id UUID PRIMARY KEY,
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    renewal_id UUID NOT NULL UNIQUE REFERENCES renewals (id),
    alias TEXT NOT NULL,
    kek_id TEXT NOT NULL,
    key_nonce BYTEA NOT NULL,
    key_ciphertext BYTEA NOT NULL,
    -- PEM chain, end entity first; empty until a CA-signed chain is uploaded.
    chain_pem TEXT NOT NULL,
    -- PKCS#10 request (PEM) for CA-signed renewals.
    csr_pem TEXT,
    fingerprint TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
