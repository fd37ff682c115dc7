//! One module per group of subcommands.

pub mod demo;
pub mod files;
pub mod flow;
pub mod keystore;
pub mod mail;
pub mod receiver;
pub mod renewal;
pub mod sapci;
pub mod scheduler;
pub mod serve;
pub mod state;
