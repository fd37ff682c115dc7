-- Reads that do not grow with every renewal ever stored: a person's task list and inbox read
-- the renewals of their tenants and receivers (one index walk per tenant or receiver, newest
-- first), reminders and the due-task gauge read the running ones. Finished renewals stay in
-- the table but out of these reads' way.
CREATE INDEX renewals_by_status ON renewals (status, created_at);
CREATE INDEX renewals_by_tenant_newest ON renewals (tenant_id, status, created_at);
CREATE INDEX renewals_by_receiver_newest ON renewals (receiver_id, status, created_at);
CREATE INDEX renewals_by_tenant_created ON renewals (tenant_id, created_at);
CREATE INDEX renewals_by_receiver_created ON renewals (receiver_id, created_at);
