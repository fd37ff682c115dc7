-- A receiver's AS2 endpoint (RFC 4130), optional: where rekey sends test messages that the
-- receiver's own system answers with signed MDNs. One per receiver; the tenant administrator
-- sets it, the receiver administrator sees it. `mdn_cert_der` is the certificate the
-- receiver's system signs its MDNs with; `mic_alg` the MIC algorithm asked for (sha256, ...).
CREATE TABLE receiver_as2_endpoints (
    receiver_id UUID PRIMARY KEY REFERENCES receivers (id),
    url TEXT NOT NULL,
    as2_from TEXT NOT NULL,
    as2_to TEXT NOT NULL,
    mdn_cert_der BYTEA NOT NULL,
    mic_alg TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- The AS2 check of a receiver step of a running renewal: how many test messages were sent,
-- when the next may go (back-off), and what the receiver's system last answered, in its own
-- words ('accepted', 'refused', 'unreachable', 'unverified' + detail), with the last signed
-- MDN as received (`mdn`, evidence; the audit entry of a confirmation carries its SHA-256).
CREATE TABLE as2_checks (
    renewal_id UUID NOT NULL REFERENCES renewals (id),
    step TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_at TIMESTAMPTZ NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    mdn BYTEA,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (renewal_id, step)
);
