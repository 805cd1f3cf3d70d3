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
