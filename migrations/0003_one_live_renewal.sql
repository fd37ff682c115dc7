-- At most one running renewal per (tenant, alias). Two renewals of the same alias would both
-- change its signer steps and the receiver's trust, and completing both leaves one stuck and the
-- receiver trusting a retired key. The index holds across processes and servers; the service
-- checks first so that the refusal names the running renewal.
-- A database that already holds two running renewals of one alias cannot take this index:
-- cancel one of them with the previous binary first.
CREATE UNIQUE INDEX renewals_one_live_per_alias ON renewals (tenant_id, alias) WHERE status = 'running';
