//! `rekey`: the command line and server of the rekey key-renewal orchestrator.
//!
//! This binary is the edge: it parses arguments, reads and writes files, and turns library
//! errors into messages and exit codes. The work itself lives in the crates under `crates/`.

#![forbid(unsafe_code)]

mod cmd;
mod config;
mod logging;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Renews the private keys that sign outbound CMS/PKCS#7 messages, without a moment in which
/// the receiver gets a message it cannot verify.
#[derive(Debug, Parser)]
#[command(name = "rekey", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: config::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate an RSA key pair with a self-signed certificate (and optionally a CSR) as files.
    Keygen(cmd::files::KeygenArgs),
    /// Sign a payload as CMS SignedData with keys given as files, or as a flow's signer step signs.
    Sign(cmd::files::SignArgs),
    /// Verify CMS SignedData and apply a receiver's rule; exit 0 only when it would be accepted.
    Verify(cmd::files::VerifyArgs),
    /// Create the data directory, configuration file, key-encryption key and database.
    Init(cmd::state::InitArgs),
    /// Tenants.
    #[command(subcommand)]
    Tenant(cmd::state::TenantCmd),
    /// The tenant's outbound keystore: keys and certificates under aliases, with history.
    #[command(subcommand)]
    Keystore(cmd::keystore::KeystoreCmd),
    /// Integration flows and their CMS signer steps.
    #[command(subcommand)]
    Flow(cmd::flow::FlowCmd),
    /// A signer step's Signer Parameters table.
    #[command(subcommand)]
    Signer(cmd::flow::SignerCmd),
    /// Receivers: contacts, capability profile and trusted certificates.
    #[command(subcommand)]
    Receiver(cmd::receiver::ReceiverCmd),
    /// Users, their roles and API tokens.
    #[command(subcommand)]
    User(cmd::state::UserCmd),
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(cmd::state::AuditCmd),
    /// Run every procedure end to end on an embedded database and prove the invariant.
    Demo(cmd::demo::DemoArgs),
    /// Renewals: start, list, show, report, cancel, roll back.
    #[command(subcommand)]
    Renewal(cmd::renewal::RenewalCmd),
    /// Due steps: list, complete (with the certificate's fingerprint), approve.
    #[command(subcommand)]
    Task(cmd::renewal::TaskCmd),
    /// The downtime window of `downtime-window`: propose, accept.
    #[command(subcommand)]
    Window(cmd::renewal::WindowCmd),
    /// Fire due reminders, escalations and window openings/closings (once, or in a loop).
    #[command(subcommand)]
    Scheduler(cmd::scheduler::SchedulerCmd),
    /// One pass of the expiry watch: notify (or open renewals) for certificates due for renewal.
    Watch(cmd::scheduler::WatchArgs),
    /// The mail outbox: list, retry, send what is due (SMTP or .eml files).
    #[command(subcommand)]
    Mail(cmd::mail::MailCmd),
    /// Run the HTTP API, web inbox, scheduler and mail dispatcher in one process.
    Serve(cmd::serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` installs its logger once it has read `[log]`; the other commands log only
    // warnings and errors, as text.
    if !matches!(cli.command, Command::Serve(_))
        && let Err(e) = logging::init(config::LogFormat::Text, "warn")
    {
        eprintln!("rekey: {e:#}");
        return ExitCode::from(1);
    }
    let result = match cli.command {
        Command::Keygen(args) => cmd::files::keygen(args),
        Command::Sign(args) if args.flow.is_some() => cmd::flow::sign(&cli.global, args),
        Command::Sign(args) => cmd::files::sign(args),
        Command::Verify(args) => cmd::files::verify(args),
        Command::Init(args) => cmd::state::init(&cli.global, args),
        Command::Tenant(c) => cmd::state::tenant(&cli.global, c),
        Command::Keystore(c) => cmd::keystore::run(&cli.global, c),
        Command::Flow(c) => cmd::flow::flow(&cli.global, c),
        Command::Signer(c) => cmd::flow::signer(&cli.global, c),
        Command::Receiver(c) => cmd::receiver::run(&cli.global, c),
        Command::User(c) => cmd::state::user(&cli.global, c),
        Command::Audit(c) => cmd::state::audit(&cli.global, c),
        Command::Demo(args) => cmd::demo::run(&cli.global, args),
        Command::Renewal(c) => cmd::renewal::renewal(&cli.global, c),
        Command::Task(c) => cmd::renewal::task(&cli.global, c),
        Command::Window(c) => cmd::renewal::window(&cli.global, c),
        Command::Scheduler(c) => cmd::scheduler::scheduler(&cli.global, c),
        Command::Watch(args) => cmd::scheduler::watch(&cli.global, args),
        Command::Mail(c) => cmd::mail::run(&cli.global, c),
        Command::Serve(args) => cmd::serve::run(&cli.global, args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rekey: {e:#}");
            ExitCode::from(1)
        }
    }
}
