//! The `queuegate` binary: parse the command line, set up logging, hand over to the library.

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: a profile of the join path under load showed ~10% of the
/// gateway's CPU in glibc's malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use queuegate::config::{Cli, DltCommand, Invocation};
use queuegate::startup::{cancel_on_signal, Application};

fn main() -> ExitCode {
    match Cli::parse().invocation() {
        Invocation::Keygen(path) => match queuegate::admission::AdmissionKeys::generate_pem_file(&path) {
            Ok(()) => {
                println!("wrote a new Ed25519 admission key to {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("queuegate: keygen failed: {e:#}");
                ExitCode::FAILURE
            }
        },
        Invocation::Dlt(DltCommand::Replay(args)) => {
            if let Err(e) = args.kafka.validate().and_then(|()| queuegate::telemetry::init(&args.telemetry)) {
                eprintln!("queuegate: {e}");
                return ExitCode::from(2);
            }
            let opts = queuegate::dlt::ReplayOptions { dry_run: args.dry_run, all: args.all };
            match queuegate::dlt::replay(&args.kafka, opts, |line| eprintln!("{line}")) {
                Ok(s) => {
                    println!(
                        "dead letters read: {}, re-published: {}, still invalid and left: {}{}",
                        s.read,
                        s.republished,
                        s.still_invalid,
                        if args.dry_run { " (dry run: nothing changed)" } else { "" }
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("queuegate: dlt replay failed: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Invocation::VerifyShuffle { fairness, listing } => match queuegate::fairness::verify_files(&fairness, &listing)
        {
            Ok(n) => {
                println!("the shuffle checks out: {n} pre-queued fans in the order the published seed gives");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("queuegate: verify-shuffle: {e:#}");
                ExitCode::FAILURE
            }
        },
        Invocation::Serve(role, settings) => {
            if let Err(e) = settings.validate_for(role).and_then(|()| queuegate::telemetry::init(&settings.telemetry)) {
                eprintln!("queuegate: {e}");
                return ExitCode::from(2);
            }
            serve(role, *settings)
        }
    }
}

fn serve(role: queuegate::config::Role, settings: queuegate::config::Settings) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("queuegate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let app = Application::build(settings, role).await?;
        tokio::spawn(cancel_on_signal(app.stop_token()));
        app.run().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "queuegate failed");
            eprintln!("queuegate: {e:#}");
            // A setting found wrong only at start-up (an admission key or JWKS file that cannot
            // be read, a Kafka property librdkafka refuses) is still a configuration error.
            if e.chain().any(|c| c.is::<queuegate::config::ConfigError>()) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
