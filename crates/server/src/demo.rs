//! `questline demo`: the whole path on a throw-away database, in one command.
//!
//! Starts the real server on a temporary SQLite file, creates three sample missions over the
//! HTTP API, streams a few thousand generated events (with duplicates, refunds, and a refund
//! that arrives before its payment) in batches, and prints what happened. Then, unless told
//! to exit, it keeps serving so the reader can try the API with curl.

use indicatif::{ProgressBar, ProgressStyle};
use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Users in the generated traffic.
const USERS: usize = 200;
/// Events per request.
const BATCH: usize = 250;

/// A client for the demo's own server.
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    pub fn new(base: String, key: String) -> Self {
        Client { http: reqwest::Client::new(), base, key }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| format!("{path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{path}: {status}: {body}"));
        }
        Ok(body)
    }
}

/// The three sample missions of the README.
pub fn sample_missions() -> Vec<Value> {
    vec![
        json!({
            "id": "swiggy-500", "name": "Spend ₹500 at Swiggy in 7 days", "status": "active",
            "window": {"kind": "rolling", "duration": "P7D"},
            "steps": [{"event_type": "payment",
                       "filters": [{"field": "amount", "op": "gte", "value": 100},
                                   {"field": "merchant", "op": "in", "value": ["swiggy", "swiggy-instamart"]},
                                   {"field": "instrument", "op": "eq", "value": "card"}],
                       "aggregate": {"fn": "sum", "field": "amount"}, "target": 500}],
            "reward": {"kind": "cash", "amount": 50, "currency": "INR"},
            "budget": {"max_rewards": 10000}
        }),
        json!({
            "id": "login-streak-5", "name": "Log in 5 days in a row", "status": "active",
            "steps": [{"event_type": "login", "aggregate": {"fn": "streak", "timezone": "Asia/Kolkata"}, "target": 5}],
            "reward": {"kind": "points", "amount": 100}
        }),
        json!({
            "id": "explorer-3", "name": "Pay at 3 different merchants", "status": "active",
            "steps": [{"event_type": "payment", "aggregate": {"fn": "distinct", "field": "merchant"}, "target": 3}],
            "reward": {"kind": "badge", "name": "Explorer"}
        }),
    ]
}

/// Generated traffic over the last ten days: payments, daily logins, 3% redelivered
/// duplicates, 2% refunds (full and partial), a few refunds sent before their payment.
pub fn generate_events(seed: u64, now: Timestamp) -> Vec<Value> {
    const MERCHANTS: [&str; 6] = ["swiggy", "swiggy-instamart", "zomato", "amazon", "uber", "bigbasket"];
    let mut rng = StdRng::seed_from_u64(seed);
    let start = now - SignedDuration::from_hours(24 * 10);
    let mut events = Vec::new();
    for u in 0..USERS {
        let user = format!("u-{u}");
        let active_days = rng.random_range(0..=10);
        for day in 0..10 {
            if day < active_days || rng.random_bool(0.2) {
                let at = start + SignedDuration::from_hours(24 * day + rng.random_range(0..20));
                events.push(json!({"id": format!("login-{u}-{day}"), "type": "login", "user_id": user,
                                   "occurred_at": at.to_string()}));
            }
        }
        for p in 0..rng.random_range(2..14) {
            let at = start + SignedDuration::from_mins(rng.random_range(0..60 * 24 * 10));
            let cents: i64 = rng.random_range(5_000..45_000);
            let amount = rust_decimal::Decimal::new(cents, 2);
            events.push(
                json!({"id": format!("pay-{u}-{p}"), "type": "payment", "user_id": user, "occurred_at": at.to_string(),
                "attributes": {"amount": questline_core::decimal::to_value(amount),
                               "merchant": MERCHANTS[rng.random_range(0..MERCHANTS.len())],
                               "instrument": if rng.random_bool(0.7) { "card" } else { "upi" }}}),
            );
        }
    }
    events.sort_by_key(|e| e["occurred_at"].as_str().map(str::to_owned));
    let payments: Vec<Value> = events.iter().filter(|e| e["type"] == "payment").cloned().collect();
    let mut extra = Vec::new();
    for (i, p) in payments.iter().enumerate() {
        if rng.random_bool(0.02) {
            let mut refund = json!({"id": format!("refund-{i}"), "type": "refund", "user_id": p["user_id"],
                                    "occurred_at": now.to_string(), "reverses": p["id"]});
            if rng.random_bool(0.5) {
                refund["attributes"] = json!({"amount": 60});
            }
            extra.push((rng.random_bool(0.1), refund));
        }
    }
    for (early, refund) in extra {
        if early {
            events.insert(0, refund); // a refund that overtakes its payment
        } else {
            events.push(refund);
        }
    }
    let duplicates: Vec<Value> = events.iter().filter(|_| rng.random_bool(0.03)).cloned().collect();
    for d in duplicates {
        let at = rng.random_range(0..events.len());
        events.insert(at, d);
    }
    events
}

/// What the demo saw, for printing.
#[derive(Debug, Default)]
pub struct Summary {
    pub sent: usize,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub completions: BTreeMap<String, usize>,
    pub rewards_by_status: BTreeMap<String, usize>,
    pub top_users: Vec<(String, usize)>,
}

/// Creates the sample missions and streams the generated events through `client`.
pub async fn drive(client: &Client, show_progress: bool) -> Result<Summary, String> {
    for m in sample_missions() {
        client.call(reqwest::Method::POST, "/v1/missions", Some(&m)).await?;
    }
    let events = generate_events(42, Timestamp::now());
    let bar = if show_progress { ProgressBar::new(events.len() as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec}").expect("static template is valid"),
    );
    let mut summary = Summary { sent: events.len(), ..Summary::default() };
    for chunk in events.chunks(BATCH) {
        let r = client.call(reqwest::Method::POST, "/v1/events", Some(&json!({"events": chunk}))).await?;
        summary.accepted += r["accepted"].as_u64().unwrap_or(0);
        summary.duplicates += r["duplicates"].as_u64().unwrap_or(0);
        summary.rejected += r["rejected"].as_array().map_or(0, Vec::len) as u64;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    settled(client).await?;
    let mut per_user = Vec::new();
    for u in 0..USERS {
        let user = format!("u-{u}");
        let progress = client.call(reqwest::Method::GET, &format!("/v1/users/{user}/missions"), None).await?;
        let mut done = 0;
        for p in progress["items"].as_array().into_iter().flatten() {
            let n = p["completions"].as_u64().unwrap_or(0) as usize;
            *summary.completions.entry(p["mission_id"].as_str().unwrap_or("?").to_owned()).or_default() += n;
            done += n;
        }
        let rewards = client.call(reqwest::Method::GET, &format!("/v1/users/{user}/rewards"), None).await?;
        for r in rewards["items"].as_array().into_iter().flatten() {
            *summary.rewards_by_status.entry(r["status"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
        }
        per_user.push((user, done));
    }
    per_user.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    summary.top_users = per_user.into_iter().take(5).collect();
    Ok(summary)
}

/// Waits (a few seconds at most) until the job worker has settled the rewards it settles
/// by itself (points into balances, badges into entitlements); cash stays pending for the
/// fulfilment webhook.
async fn settled(client: &Client) -> Result<(), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut waiting = 0;
        for u in 0..USERS {
            let rewards = client.call(reqwest::Method::GET, &format!("/v1/users/u-{u}/rewards"), None).await?;
            waiting += rewards["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["status"] == "pending" && r["kind"] != "cash")
                .count();
        }
        if waiting == 0 || std::time::Instant::now() > deadline {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "events sent      {:>6}", self.sent)?;
        writeln!(f, "  accepted       {:>6}", self.accepted)?;
        writeln!(f, "  duplicates     {:>6}  (redelivered ids: counted once)", self.duplicates)?;
        writeln!(f, "  rejected       {:>6}", self.rejected)?;
        writeln!(f, "completions")?;
        for (mission, n) in &self.completions {
            writeln!(f, "  {mission:<16} {n:>5}")?;
        }
        writeln!(f, "rewards by status (points and badges settled by the job worker; cash awaits its webhook)")?;
        for (status, n) in &self.rewards_by_status {
            writeln!(f, "  {status:<16} {n:>5}")?;
        }
        writeln!(f, "top users (completions)")?;
        for (user, n) in &self.top_users {
            writeln!(f, "  {user:<16} {n:>5}")?;
        }
        Ok(())
    }
}

/// `questline demo`: serve on a temporary database, drive the sample traffic through the
/// HTTP API, print the summary, then keep serving until SIGINT/SIGTERM unless `exit`.
pub async fn run(
    mut config: crate::config::Config,
    exit: bool,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    config.database_url = format!("sqlite://{}", dir.path().join("demo.db").display());
    let server = crate::serve::Server::bind(&config, metrics).await.map_err(|e| e.to_string())?;
    let base = format!("http://{}", server.local_addr());
    let key = match (server.generated_admin_key(), &config.admin_key) {
        (Some(generated), _) => generated.to_owned(),
        (None, Some(configured)) => configured.clone(),
        (None, None) => return Err("the demo server started without an admin key".into()),
    };
    let shutdown = server.shutdown_token();
    #[expect(clippy::disallowed_methods, reason = "the handle is awaited once the demo is done")]
    let serving = tokio::spawn(server.serve());

    println!("questline demo: serving {base} on a temporary database ({})", dir.path().display());
    let summary =
        drive(&Client::new(base.clone(), key.clone()), std::io::IsTerminal::is_terminal(&std::io::stderr())).await;
    match &summary {
        Ok(summary) => println!("\n{summary}"),
        Err(e) => eprintln!("questline demo: {e}"),
    }
    if summary.is_ok() && !exit {
        println!("The server keeps running; try:");
        println!("  export QL_KEY={key}");
        println!("  curl -s -H \"Authorization: Bearer $QL_KEY\" {base}/v1/missions | head -c 600; echo");
        println!("  curl -s -H \"Authorization: Bearer $QL_KEY\" {base}/v1/users/u-1/missions; echo");
        println!("  curl -s -H \"Authorization: Bearer $QL_KEY\" {base}/v1/users/u-1/rewards; echo");
        println!("  curl -s -H \"Authorization: Bearer $QL_KEY\" {base}/v1/users/u-1/balances; echo");
        println!("  curl -s -H \"Authorization: Bearer $QL_KEY\" {base}/v1/users/u-1/entitlements; echo");
        println!("Press Ctrl-C to stop (the temporary database is deleted).");
        crate::serve::on_signal(shutdown.clone()).map_err(|e| e.to_string())?;
    } else {
        shutdown.cancel();
    }
    serving.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    summary.map(|_| ())
}
