//! `rekey`: the command line and server of the rekey key-renewal orchestrator.
//!
//! This binary is the edge: it parses arguments, reads and writes files, and turns library
//! errors into messages and exit codes. The work itself lives in the crates under `crates/`.

#![forbid(unsafe_code)]

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Renews the private keys that sign outbound CMS/PKCS#7 messages, without a moment in which
/// the receiver gets a message it cannot verify.
#[derive(Debug, Parser)]
#[command(name = "rekey", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate an RSA key pair with a self-signed certificate (and optionally a CSR) as files.
    Keygen(cmd::files::KeygenArgs),
    /// Sign a payload as CMS SignedData with one or more keys given as files.
    Sign(cmd::files::SignArgs),
    /// Verify CMS SignedData and apply a receiver's rule; exit 0 only when it would be accepted.
    Verify(cmd::files::VerifyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(args) => cmd::files::keygen(args),
        Command::Sign(args) => cmd::files::sign(args),
        Command::Verify(args) => cmd::files::verify(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rekey: {e:#}");
            ExitCode::from(1)
        }
    }
}
