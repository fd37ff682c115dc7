-- The `signer` role: a user (usually a service user whose API token a system holds) may sign
-- payloads as one flow's signer steps sign, and do nothing else. Its scope is the flow:
-- `scope_id` and the new `flow_id` hold the flow's id (the foreign key keeps a grant from
-- naming a flow that is not there), `tenant_id` the flow's tenant. The role column's CHECK
-- changes, so `user_roles` is rebuilt the portable way (SQLite cannot alter a CHECK).
CREATE TABLE user_roles_new (
    user_id UUID NOT NULL REFERENCES users (id),
    role TEXT NOT NULL CHECK (role IN ('tenant_admin', 'integration_developer', 'receiver_admin', 'signer')),
    scope_id UUID NOT NULL,
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    receiver_id UUID REFERENCES receivers (id),
    flow_id UUID REFERENCES flows (id),
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, role, scope_id),
    CHECK ((role = 'receiver_admin') = (receiver_id IS NOT NULL)),
    CHECK ((role = 'signer') = (flow_id IS NOT NULL))
);
INSERT INTO user_roles_new (user_id, role, scope_id, tenant_id, receiver_id, flow_id, created_at)
    SELECT user_id, role, scope_id, tenant_id, receiver_id, NULL, created_at FROM user_roles;
DROP TABLE user_roles;
ALTER TABLE user_roles_new RENAME TO user_roles;
CREATE INDEX user_roles_by_scope ON user_roles (role, scope_id);
