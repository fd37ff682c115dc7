//! sea-orm entities, one module per table of `migrations/` (see the SQL for what each column
//! means). The store's own modules use them; the engine may use the engine's tables
//! (`renewal`, `renewal_step`, `timer`, `outbox`, `link_token`) directly inside a transaction
//! it shares with the store's functions.
//!
//! Entities carry no relations: joins are written out where they are needed.

pub mod api_token;
pub mod audit_head;
pub mod audit_log;
pub mod flow;
pub mod keystore_chain_cert;
pub mod keystore_entry;
pub mod link_token;
pub mod outbox;
pub mod pending_key;
pub mod receiver;
pub mod receiver_admin_email;
pub mod receiver_trusted_cert;
pub mod renewal;
pub mod renewal_step;
pub mod signer_row;
pub mod signer_step;
pub mod signer_step_receiver;
pub mod tenant;
pub mod timer;
pub mod user;
pub mod user_role;
