-- The first answer to each creating API call made with an `Idempotency-Key` header, so that a
-- retry after a lost response gets that answer instead of doing the work again. One row per
-- user and key, written in the transaction that did the work: the answer is stored exactly
-- when the work committed. `request_sha256` tells a retry (same request) from the key reused
-- for another request, which is refused.
CREATE TABLE idempotency_keys (
    user_id UUID NOT NULL REFERENCES users (id),
    idempotency_key TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);
