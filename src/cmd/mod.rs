//! One module per group of subcommands.

pub mod files;
pub mod flow;
pub mod keystore;
pub mod receiver;
pub mod state;
