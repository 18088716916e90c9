//! The `queuegate` binary: parse the command line, set up logging, hand over to the library.

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: a profile of the join path under load showed ~10% of the
/// gateway's CPU in glibc's malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use queuegate::config::{Cli, Command, DltCommand, Role};
use queuegate::startup::{cancel_on_signal, Application};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Needs no configuration: handled before the settings are checked.
    if let Some(Command::Keygen { path }) = &cli.command {
        return match queuegate::admission::AdmissionKeys::generate_pem_file(path) {
            Ok(()) => {
                println!("wrote a new Ed25519 admission key to {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("queuegate: keygen failed: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = cli.settings.validate() {
        eprintln!("queuegate: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = queuegate::telemetry::init(&cli.settings.log, cli.settings.log_format) {
        eprintln!("queuegate: {e}");
        return ExitCode::from(2);
    }
    let role = match cli.command.unwrap_or(Command::Run) {
        Command::Run => Role::Run,
        Command::Gateway => Role::Gateway,
        Command::Consumer => Role::Consumer,
        Command::Keygen { .. } => unreachable!("handled above"),
        Command::Dlt(DltCommand::Replay { dry_run, all }) => {
            let opts = queuegate::dlt::ReplayOptions { dry_run, all };
            return match queuegate::dlt::replay(&cli.settings, opts, |line| eprintln!("{line}")) {
                Ok(s) => {
                    println!(
                        "dead letters read: {}, re-published: {}, still invalid and left: {}{}",
                        s.read,
                        s.republished,
                        s.still_invalid,
                        if dry_run { " (dry run: nothing changed)" } else { "" }
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("queuegate: dlt replay failed: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("queuegate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let app = Application::build(cli.settings, role).await?;
        tokio::spawn(cancel_on_signal(app.stop_token()));
        app.run().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "queuegate failed");
            eprintln!("queuegate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
