//! `questline-bench`: see `docs/BENCHMARKS.md`.

use clap::Parser;
use questline_bench::Cli;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse() {
        Cli::Ingest(args) => match questline_bench::ingest(&args).await {
            Ok(report) => {
                println!("{report}");
                if report.verification.ok {
                    ExitCode::SUCCESS
                } else {
                    eprintln!("questline-bench: verification failed (see above)");
                    ExitCode::FAILURE
                }
            }
            Err(e) => fail(&*e),
        },
        Cli::Queue(args) => match questline_bench::queue::run(&args).await {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&*e),
        },
        Cli::Messages(args) => match questline_bench::messages::run(&args).await {
            Ok(report) => {
                println!("{report}");
                let written = args.out.as_ref().map(|out| {
                    serde_json::to_string_pretty(&report).map_err(|e| e.to_string()).and_then(|json| {
                        std::fs::write(out, json + "\n").map_err(|e| format!("{}: {e}", out.display()))
                    })
                });
                if let Some(Err(e)) = written {
                    eprintln!("questline-bench: writing the report: {e}");
                    return ExitCode::FAILURE;
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&*e),
        },
        Cli::Limit(args) => match questline_bench::limit::run(&args).await {
            Ok(report) => {
                println!("{report}");
                if let Some(out) = &args.out {
                    let json = serde_json::to_string_pretty(&report).expect("a report serializes");
                    if let Err(e) = std::fs::write(out, json + "\n") {
                        eprintln!("questline-bench: writing the report: {}: {e}", out.display());
                        return ExitCode::FAILURE;
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&*e),
        },
        Cli::QueueRole(args) => match questline_bench::queue::role::run(&args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&*e),
        },
    }
}

fn fail(e: &(dyn std::error::Error + Send + Sync)) -> ExitCode {
    eprintln!("questline-bench: {e}");
    ExitCode::FAILURE
}
