-- Reads that do not grow with every renewal ever stored: task lists, reminders and the inbox
-- read the running renewals (by status, newest first), a receiver administrator's lists read
-- the renewals that reach their receiver. Finished renewals stay in the table but out of these
-- reads' way.
CREATE INDEX renewals_by_status ON renewals (status, created_at);
CREATE INDEX renewals_by_receiver ON renewals (receiver_id, status);
