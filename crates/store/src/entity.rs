//! sea-orm entities, one module per table of `migrations/` (see the SQL for what each column
//! means). Private to the store: each table has one owner module that reads and writes it
//! through typed functions (see the crate's documentation), and nothing outside the store
//! names an entity.
//!
//! Entities carry no relations: joins are written out where they are needed.

pub(crate) mod api_token;
pub(crate) mod as2_check;
pub(crate) mod audit_head;
pub(crate) mod audit_log;
pub(crate) mod flow;
pub(crate) mod idempotency_key;
pub(crate) mod keystore_chain_cert;
pub(crate) mod keystore_entry;
pub(crate) mod link_token;
pub(crate) mod outbox;
pub(crate) mod pending_key;
pub(crate) mod receiver;
pub(crate) mod receiver_admin_email;
pub(crate) mod receiver_as2_endpoint;
pub(crate) mod receiver_trusted_cert;
pub(crate) mod renewal;
pub(crate) mod server_secret;
pub(crate) mod signer_row;
pub(crate) mod signer_step;
pub(crate) mod signer_step_receiver;
pub(crate) mod tenant;
pub(crate) mod timer;
pub(crate) mod user;
pub(crate) mod user_role;
pub(crate) mod web_session;
