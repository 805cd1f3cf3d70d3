//! `questline-bench`: see `docs/BENCHMARKS.md`.

use clap::Parser;
use questline_bench::Cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let Cli::Ingest(args) = Cli::parse();
    match questline_bench::ingest(&args).await {
        Ok(report) => {
            println!("{report}");
            if report.verification.ok {
                std::process::ExitCode::SUCCESS
            } else {
                eprintln!("questline-bench: verification failed (see above)");
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("questline-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
