-- Which receivers a signer step's messages reach. The guard judges every one of them when a
-- renewal changes the step. A step with no rows here is taken to reach the receiver a renewal
-- names (what every step did before this table existed).
CREATE TABLE signer_step_receivers (
    step_id UUID NOT NULL REFERENCES signer_steps (id),
    receiver_id UUID NOT NULL REFERENCES receivers (id),
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (step_id, receiver_id)
);
CREATE INDEX signer_step_receivers_by_receiver ON signer_step_receivers (receiver_id);
