//! The result of a run: machine-readable (JSON beside the plot) and a summary for people.

use crate::database::Counts;
use crate::engine::EngineRun;
use crate::missions::BenchMission;
use crate::reference::{ProgressRows, ReferenceRun};
use crate::sampler::Sample;
use crate::workload::{LOGIN, PAYMENT, READ};
use crate::{IngestArgs, Plan};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub benchmark: &'static str,
    pub label: String,
    pub started_at: String,
    /// The command line as run.
    pub command: String,
    pub machine: Machine,
    pub params: Params,
    pub engine: EnginePhase,
    pub verification: Verification,
    pub reference: Option<ReferencePhase>,
    /// Why the reference did not run to the end, if it failed.
    pub reference_error: Option<String>,
    /// Engine events/s over reference events/s.
    pub share_of_reference: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub memory_gib: f64,
    /// `/proc/loadavg` when the run started: other work on the machine disturbs the figures.
    pub load_before: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            memory_gib: (kib / (1024.0 * 1024.0) * 10.0).round() / 10.0,
            load_before: std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub database: &'static str,
    pub mode: &'static str,
    pub users: u64,
    pub missions: usize,
    /// Active missions listening to each event type.
    pub missions_by_type: Vec<(&'static str, usize)>,
    pub events: u64,
    pub clients: usize,
    pub batch: u64,
    pub rate: Option<f64>,
    pub duration_secs: Option<u64>,
    pub seed: u64,
    pub reference_progress: ProgressRows,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub requests: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// (percentile, ms) for the plot.
    pub distribution: Vec<(f64, f64)>,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Latency {
            requests: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
            distribution: [0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0]
                .iter()
                .map(|p| (*p, ms(p / 100.0)))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// Highest RSS sampled during the phase, MiB.
    pub peak_sampled_mib: f64,
    /// Highest anonymous RSS sampled (without mapped file pages), MiB.
    pub peak_anon_mib: f64,
    /// The process's `VmHWM` at the end of the phase (setup included), MiB.
    pub vm_hwm_mib: Option<f64>,
    /// Mean RSS over the first and the last minute (runs of two minutes or more), MiB.
    pub first_minute_mib: Option<f64>,
    pub last_minute_mib: Option<f64>,
    /// The same for the anonymous part.
    pub first_minute_anon_mib: Option<f64>,
    pub last_minute_anon_mib: Option<f64>,
}

impl Memory {
    fn of(samples: &[Sample], vm_hwm_mib: Option<f64>) -> Memory {
        let peak = samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
        let end = samples.last().map_or(0.0, |s| s.t);
        let mean = |from: f64, to: f64, anon: bool| {
            let v: Vec<f64> = samples
                .iter()
                .filter(|s| s.t >= from && s.t < to)
                .map(|s| if anon { s.rss_anon_mib } else { s.rss_mib })
                .collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let long = end >= 120.0;
        let first = |anon| if long { mean(0.0, 60.0, anon) } else { None };
        let last = |anon| if long { mean(end - 60.0, end + 1.0, anon) } else { None };
        Memory {
            peak_sampled_mib: peak,
            peak_anon_mib: samples.iter().map(|s| s.rss_anon_mib).fold(0.0, f64::max),
            vm_hwm_mib,
            first_minute_mib: first(false),
            last_minute_mib: last(false),
            first_minute_anon_mib: first(true),
            last_minute_anon_mib: last(true),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EnginePhase {
    pub sent: u64,
    /// Events of the requests answered 200 (the server answers after the commit).
    pub committed: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub failed_requests: u64,
    pub errors: Vec<String>,
    pub elapsed_secs: f64,
    /// Events acknowledged (= committed) per second, over the whole phase.
    pub events_per_sec: f64,
    pub latency: Latency,
    pub memory: Memory,
    /// CPU the load generator spent building bodies (it shares the machine), seconds.
    pub generator_cpu_secs: f64,
    pub database: Counts,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Distinct event ids sent: what must be accepted, once each.
    pub expected_new: u64,
    pub accepted: u64,
    pub ledger_rows: u64,
    /// Resend of every batch: (sent, accepted, duplicates); accepted must be 0.
    pub resend: Option<(u64, u64, u64)>,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReferencePhase {
    pub events: u64,
    pub progress_rows: u64,
    pub elapsed_secs: f64,
    /// Events (ledger rows, with their progress rows) per second.
    pub events_per_sec: f64,
    /// Ledger plus progress rows per second.
    pub rows_per_sec: f64,
    pub batch_latency: Latency,
    pub database: Counts,
    pub samples: Vec<Sample>,
}

pub struct Parts<'a> {
    pub args: &'a IngestArgs,
    pub plan: &'a Plan,
    pub machine: Machine,
    pub started_at: jiff::Timestamp,
    pub missions: &'a [BenchMission],
    pub run: EngineRun,
    pub counts: Counts,
    pub expected_new: u64,
    pub reference: Result<Option<(ReferenceRun, Counts)>, String>,
}

impl Report {
    pub fn new(p: Parts<'_>) -> Report {
        let Parts { args, plan, machine, started_at, missions, run, counts, expected_new, reference } = p;
        let secs = run.elapsed.as_secs_f64();
        let engine = EnginePhase {
            sent: run.sent,
            committed: run.committed,
            accepted: run.accepted,
            duplicates: run.duplicates,
            rejected: run.rejected,
            failed_requests: run.failed_requests,
            errors: run.first_errors,
            elapsed_secs: secs,
            events_per_sec: run.committed as f64 / secs,
            latency: Latency::of(&run.latency),
            memory: Memory::of(&run.samples, run.vm_hwm_mib),
            generator_cpu_secs: run.generator_secs,
            database: counts.clone(),
            samples: run.samples,
        };
        let verification = Verification {
            expected_new,
            accepted: run.accepted,
            ledger_rows: counts.ledger_rows,
            resend: run.resend,
            ok: run.failed_requests == 0
                && run.rejected == 0
                && run.accepted == expected_new
                && run.accepted + run.duplicates == run.sent
                && counts.ledger_rows == expected_new
                && run.resend.is_none_or(|(sent, accepted, duplicates)| accepted == 0 && duplicates == sent),
        };
        let (reference, reference_error) = match reference {
            Ok(r) => (r, None),
            Err(e) => (None, Some(e)),
        };
        let reference = reference.map(|(r, counts)| {
            let secs = r.elapsed.as_secs_f64();
            ReferencePhase {
                events: r.events,
                progress_rows: r.progress_rows,
                elapsed_secs: secs,
                events_per_sec: r.events as f64 / secs,
                rows_per_sec: (r.events + r.progress_rows) as f64 / secs,
                batch_latency: Latency::of(&r.latency),
                database: counts,
                samples: r.samples,
            }
        });
        let share_of_reference = reference.as_ref().map(|r| engine.events_per_sec / r.events_per_sec);
        let by_type = |t| missions.iter().filter(|m| m.listens(t)).count();
        Report {
            benchmark: "ingest",
            label: args.label(),
            started_at: started_at.to_string(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            machine,
            params: Params {
                database: args.db.database.as_str(),
                mode: args.mode(),
                users: args.users,
                missions: missions.len(),
                missions_by_type: vec![(PAYMENT, by_type(PAYMENT)), (LOGIN, by_type(LOGIN)), (READ, by_type(READ))],
                events: engine.sent,
                clients: plan.clients,
                batch: plan.batch,
                rate: plan.rate,
                duration_secs: args.duration_secs,
                seed: args.seed,
                reference_progress: plan.reference_progress,
            },
            engine,
            verification,
            reference,
            reference_error,
            share_of_reference,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.engine;
        let p = &self.params;
        writeln!(
            f,
            "{} ({} mode) on {}, {} × {}",
            self.label, p.mode, p.database, self.machine.nproc, self.machine.cpu
        )?;
        writeln!(
            f,
            "workload  {} users, {} missions {:?}, {} events, {} clients, batches of {}{}",
            p.users,
            p.missions,
            p.missions_by_type,
            p.events,
            p.clients,
            p.batch,
            p.rate.map_or(String::new(), |r| format!(", open loop at {r:.0} events/s"))
        )?;
        writeln!(
            f,
            "engine    {:>10.0} events/s committed  ({} of {} events in {:.1} s; {} accepted, {} duplicates, {} rejected, {} failed requests)",
            e.events_per_sec,
            e.committed,
            e.sent,
            e.elapsed_secs,
            e.accepted,
            e.duplicates,
            e.rejected,
            e.failed_requests
        )?;
        let l = &e.latency;
        writeln!(
            f,
            "latency   p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  p99.9 {:.1} ms  max {:.1} ms  ({} requests)",
            l.p50_ms, l.p95_ms, l.p99_ms, l.p999_ms, l.max_ms, l.requests
        )?;
        let m = &e.memory;
        write!(
            f,
            "memory    peak RSS {:.0} MiB (VmHWM {:.0} MiB), of which anonymous {:.0} MiB",
            m.peak_sampled_mib,
            m.vm_hwm_mib.unwrap_or(0.0),
            m.peak_anon_mib
        )?;
        if let (Some(a), Some(b)) = (m.first_minute_mib, m.last_minute_mib) {
            write!(f, "; first minute {a:.0} MiB, last minute {b:.0} MiB")?;
        }
        if let (Some(a), Some(b)) = (m.first_minute_anon_mib, m.last_minute_anon_mib) {
            write!(f, " (anonymous {a:.0} -> {b:.0} MiB)")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "database  {} ledger rows, {} progress rows (one per user, {:.0} B each), {} rewards{}",
            e.database.ledger_rows,
            e.database.progress_rows,
            e.database.avg_state_bytes,
            e.database.rewards,
            e.database.size_mib.map_or(String::new(), |s| format!(", {s:.0} MiB on disk"))
        )?;
        writeln!(f, "generator {:.1} s of CPU building request bodies", e.generator_cpu_secs)?;
        if let Some(r) = &self.reference {
            writeln!(
                f,
                "reference {:>10.0} events/s ({:.0} rows/s: {} ledger + {} progress rows in {:.1} s, {} progress rows)",
                r.events_per_sec,
                r.rows_per_sec,
                r.events,
                r.progress_rows,
                r.elapsed_secs,
                p.reference_progress_name()
            )?;
        }
        if let Some(err) = &self.reference_error {
            writeln!(f, "reference FAILED: {err}")?;
        }
        if let Some(share) = self.share_of_reference {
            writeln!(f, "share     {:.1}% of the reference", share * 100.0)?;
        }
        let v = &self.verification;
        writeln!(
            f,
            "verified  {}: {} distinct ids sent, {} accepted, {} in the ledger{}",
            if v.ok { "ok" } else { "FAILED" },
            v.expected_new,
            v.accepted,
            v.ledger_rows,
            v.resend.map_or(String::new(), |(s, a, d)| format!("; resent {s}: {a} accepted, {d} duplicates"))
        )?;
        for err in &e.errors {
            writeln!(f, "  error: {err}")?;
        }
        Ok(())
    }
}

impl Params {
    fn reference_progress_name(&self) -> &'static str {
        match self.reference_progress {
            ProgressRows::Qualifying => "qualifying",
            ProgressRows::Listening => "listening",
            ProgressRows::None => "no",
        }
    }
}
