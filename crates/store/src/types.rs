//! The vocabulary the store's API speaks — ids, aliases, names, email addresses, roles —
//! defined in `rekey-model` and re-exported here so that callers naming `rekey_store::Alias`
//! and the like keep working. New code names `rekey_model` directly.

pub use rekey_model::{
    Alias, Email, EntryId, FlowId, FlowName, Grant, InvalidInput, ReceiverId, ReceiverName, Role,
    StepId, StepName, TenantId, TenantName, TokenId, UserId,
};
