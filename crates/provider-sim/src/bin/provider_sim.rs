//! `questline-provider-sim`: one simulated provider on a port, for trying the dispatcher by
//! hand or from a benchmark. See the library's documentation for its endpoints.

use clap::Parser;
use questline_provider_sim::{Simulator, Window};
use std::net::SocketAddr;

#[derive(Parser)]
#[command(about = "A message provider with its own rate limits, for testing questline's dispatcher")]
struct Args {
    /// How its stats name it.
    #[arg(long, default_value = "sim")]
    name: String,
    /// Where it listens.
    #[arg(long, default_value = "127.0.0.1:8701")]
    listen: SocketAddr,
    /// A limit as REQUESTS/MILLISECONDS (repeat for several): `--limit 100/1000 --limit 5000/60000`.
    #[arg(long = "limit", value_parser = Window::parse)]
    limits: Vec<Window>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let sim = Simulator::start(&args.name, args.listen, args.limits).await?;
    println!("{} listening on http://{} (messages: POST {})", args.name, sim.addr(), sim.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
