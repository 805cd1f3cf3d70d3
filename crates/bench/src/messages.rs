//! `questline-bench messages`: a burst of messages end to end, through the real HTTP API and
//! dispatcher, to three simulated SMS providers (`questline-provider-sim`): fixed-price,
//! committed and cheap per message, each at its own limit. What it measures: how fast the
//! burst is accepted, and the messages sent per second against the sum of the providers'
//! limits (the target: every limit fully used), each provider's share of its limit while it
//! had work, and the 429s the simulators counted (the target: none).

use crate::DatabaseArgs;
use crate::Result;
use questline_core::message::Channel;
use questline_provider_sim::{Simulator, Window, utilisation};
use questline_server::Config;
use questline_server::dispatch::config::{
    CommitmentConfig, LimitConfig, PriceConfig, ProviderConfig, ProviderKind, TemplateConfig,
};
use questline_server::serve::Server;
use serde::Serialize;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct MessagesArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Messages in the burst.
    #[arg(long, default_value_t = 100_000)]
    pub messages: usize,
    /// The three providers' limits per second: fixed-price, committed, cheap.
    #[arg(long, value_delimiter = ',', default_values_t = [500u32, 1000, 2000])]
    pub rates: Vec<u32>,
    /// Messages per request (the API takes 1 to 1,000).
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Requests in flight while the burst is posted.
    #[arg(long, default_value_t = 4)]
    pub posters: usize,
    /// Every message's deadline, seconds after the burst begins. Default: 15 % more than the
    /// providers need at their full limits, plus 2 s, so that every provider is needed
    /// (without a deadline, every message waits for the cheapest: the fixed-price one).
    #[arg(long)]
    pub deadline_secs: Option<u64>,
    /// The server's `dispatch_concurrency` (default: the product's).
    #[arg(long)]
    pub dispatch_concurrency: Option<usize>,
    /// Give up waiting for the last sends after this long.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Where the JSON result goes (printed too).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct MessagesReport {
    pub database: &'static str,
    pub messages: usize,
    /// Every message's deadline, seconds after the burst began.
    pub deadline_secs: u64,
    pub commit: Option<String>,
    pub machine_load: String,
    /// From the first request to the last 202.
    pub posted_secs: f64,
    pub accepted_per_sec: f64,
    /// Messages the providers admitted.
    pub sent: u64,
    /// From the first admission at any provider to the last.
    pub sending_secs: f64,
    pub sent_per_sec: f64,
    pub limits_per_sec: u32,
    /// `sent_per_sec / limits_per_sec`.
    pub share_of_limits: f64,
    pub providers: Vec<ProviderFigures>,
}

#[derive(Debug, Serialize)]
pub struct ProviderFigures {
    pub name: String,
    pub limit_per_sec: u32,
    pub admitted: u64,
    pub breaches: u64,
    /// Admissions per second from its first to the one by which it had 99 % of its
    /// messages, against its limit.
    pub utilisation: f64,
    pub most_in_a_window: u64,
}

impl std::fmt::Display for MessagesReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} messages due in {} s on {}: accepted in {:.1} s ({:.0}/s); {} sent in {:.1} s = {:.0}/s of {}/s ({:.1} %)",
            self.messages,
            self.deadline_secs,
            self.database,
            self.posted_secs,
            self.accepted_per_sec,
            self.sent,
            self.sending_secs,
            self.sent_per_sec,
            self.limits_per_sec,
            self.share_of_limits * 100.0
        )?;
        for p in &self.providers {
            writeln!(
                f,
                "  {:<10} {:>6}/s: {:>7} sent, {:>5.1} % of its limit while it had work, {} in its busiest window, {} breaches",
                p.name,
                p.limit_per_sec,
                p.admitted,
                p.utilisation * 100.0,
                p.most_in_a_window,
                p.breaches
            )?;
        }
        Ok(())
    }
}

const NAMES: [&str; 3] = ["fixed", "committed", "cheap"];

fn providers(sims: &[Simulator], rates: &[u32]) -> Vec<ProviderConfig> {
    let price = |name: &str| match name {
        "fixed" => PriceConfig {
            per_message: None,
            fixed_monthly: Some(20_000.into()),
            capacity_monthly: Some(100_000_000),
            currency: "INR".into(),
        },
        "committed" => PriceConfig {
            per_message: Some("0.10".parse().expect("a decimal")),
            fixed_monthly: None,
            capacity_monthly: None,
            currency: "INR".into(),
        },
        _ => PriceConfig {
            per_message: Some("0.05".parse().expect("a decimal")),
            fixed_monthly: None,
            capacity_monthly: None,
            currency: "INR".into(),
        },
    };
    NAMES
        .iter()
        .zip(sims)
        .zip(rates)
        .map(|((name, sim), rate)| ProviderConfig {
            name: (*name).to_owned(),
            channels: vec![Channel::Sms],
            kind: ProviderKind::Http,
            url: sim.url(),
            headers: Default::default(),
            body: Some(r#"{"to": {{to}}, "text": {{body}}, "ref": {{id}}}"#.to_owned()),
            from: None,
            limits: vec![LimitConfig { requests: *rate, per: "PT1S".into() }],
            price: price(name),
            commitment: (*name == "committed").then_some(CommitmentConfig { monthly: 100_000_000 }),
            timeout: None,
        })
        .collect()
}

pub async fn run(args: &MessagesArgs) -> Result<MessagesReport> {
    if args.rates.len() != 3 {
        return Err("--rates takes three limits: fixed-price, committed, cheap".into());
    }
    if !(1..=1000).contains(&args.batch) {
        return Err("--batch is 1 to 1000".into());
    }
    let mut sims = Vec::new();
    for (name, rate) in NAMES.iter().zip(&args.rates) {
        let window = Window { requests: *rate, length: Duration::from_secs(1) };
        sims.push(Simulator::start_alone(name, "127.0.0.1:0".parse()?, vec![window])?);
    }
    let db = args.db.fresh("messages").await?;
    let key = format!("ql_bench-{:016x}", std::process::id() as u64 ^ 0x5eed_0000_0000);
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        database_url: db.url.clone(),
        admin_key: Some(key.clone()),
        allow_private_targets: true,
        providers: providers(&sims, &args.rates),
        templates: vec![TemplateConfig {
            name: "offer".into(),
            body: "Hi {{ name }}, 10% back today".into(),
            subject: None,
        }],
        ..Config::default()
    };
    let config =
        Config { dispatch_concurrency: args.dispatch_concurrency.unwrap_or(config.dispatch_concurrency), ..config };
    let server = Server::bind(&config, None).await.map_err(|e| format!("cannot start the server: {e}"))?;
    let base = format!("http://{}", server.local_addr());
    let shutdown = server.shutdown_token();
    #[expect(clippy::disallowed_methods, reason = "the handle is awaited at the end of the run")]
    let serving = tokio::spawn(server.serve());
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;

    let limits_per_sec: u32 = args.rates.iter().sum();
    let due_in = args
        .deadline_secs
        .unwrap_or_else(|| (args.messages as f64 / f64::from(limits_per_sec.max(1)) * 1.15).ceil() as u64 + 2);
    let deadline_at = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(due_in as i64)).to_string();
    let begun = Instant::now();
    let batches: Vec<std::ops::Range<usize>> =
        (0..args.messages).step_by(args.batch).map(|from| from..(from + args.batch).min(args.messages)).collect();
    let mut posting = tokio::task::JoinSet::new();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(batches));
    for _ in 0..args.posters {
        let (http, queue, url, key) = (http.clone(), queue.clone(), format!("{base}/v1/messages"), key.clone());
        let deadline_at = deadline_at.clone();
        posting.spawn(async move {
            loop {
                let Some(range) = queue.lock().expect("the queue's lock").pop() else { return Ok::<_, String>(()) };
                let batch: Vec<Value> = range
                    .map(|i| {
                        json!({"id": format!("bench-{i}"), "channel": "sms", "to": format!("+9198{i:08}"),
                            "template": "offer", "data": {"name": format!("user {i}")}, "user_id": format!("u-{i}"),
                            "deadline": deadline_at})
                    })
                    .collect();
                let answer = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"messages": batch}))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if answer.status() != 202 {
                    let status = answer.status();
                    let text: String = answer.text().await.unwrap_or_default().chars().take(400).collect();
                    return Err(format!("a batch was answered {status}: {text}"));
                }
            }
        });
    }
    while let Some(done) = posting.join_next().await {
        done??;
    }
    let posted_secs = begun.elapsed().as_secs_f64();

    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let admitted = |sims: &[Simulator]| sims.iter().map(|s| s.stats().admitted).sum::<u64>();
    let due = begun + Duration::from_secs(due_in);
    while admitted(&sims) < args.messages as u64 && Instant::now() < deadline.min(due + Duration::from_secs(2)) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A moment for sends in flight, then the figures.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = admitted(&sims);

    let mut first_last: Option<(Instant, Instant)> = None;
    let mut figures = Vec::new();
    for ((sim, name), rate) in sims.iter().zip(NAMES).zip(&args.rates) {
        let times = sim.admissions();
        if let (Some(&first), Some(&last)) = (times.first(), times.last()) {
            first_last = Some(match first_last {
                None => (first, last),
                Some((f, l)) => (f.min(first), l.max(last)),
            });
        }
        let stats = sim.stats();
        figures.push(ProviderFigures {
            name: name.to_owned(),
            limit_per_sec: *rate,
            admitted: stats.admitted,
            breaches: stats.breaches,
            utilisation: utilisation(&times, *rate),
            most_in_a_window: stats.windows.first().map_or(0, |w| w[2]),
        });
    }
    shutdown.cancel();
    serving.await??;
    db.finish(false).await?;

    let sending_secs = first_last.map_or(0.0, |(f, l)| l.duration_since(f).as_secs_f64());
    let sent_per_sec = if sending_secs > 0.0 { (sent.saturating_sub(1)) as f64 / sending_secs } else { 0.0 };
    Ok(MessagesReport {
        database: args.db.database.as_str(),
        messages: args.messages,
        deadline_secs: due_in,
        commit: crate::queue::report::commit(),
        machine_load: std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned(),
        posted_secs,
        accepted_per_sec: args.messages as f64 / posted_secs,
        sent,
        sending_secs,
        sent_per_sec,
        limits_per_sec,
        share_of_limits: sent_per_sec / f64::from(limits_per_sec),
        providers: figures,
    })
}
