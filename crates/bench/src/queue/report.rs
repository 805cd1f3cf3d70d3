//! The queue benchmark's results: every run of every system (`LABEL-SYSTEM.json`), the
//! medians and the reading against the target (`LABEL-summary.json`), and a table.

use crate::Result;
use crate::queue::QueueArgs;
use crate::queue::contract::{DrainOut, Percentiles};
use crate::queue::systems::System;
use crate::report::Machine;
use serde::Serialize;
use std::fmt;
use std::path::Path;

/// One run of one system.
#[derive(Debug, Clone, Serialize)]
pub struct SystemRun {
    pub system: System,
    pub backend: &'static str,
    pub run: usize,
    pub started_at: String,
    /// `/proc/loadavg` before and after: the machine is shared.
    pub load_before: String,
    pub load_after: String,
    pub version: Option<String>,
    /// The settings the system ran with, as its script reported them.
    pub settings: Option<serde_json::Value>,
    pub enqueue_jobs_per_sec: Option<f64>,
    pub drain_jobs_per_sec: Option<f64>,
    pub drain: Option<DrainOut>,
    /// Enqueue (the instant in the payload) to the handler's start.
    pub latency: Option<Percentiles>,
    /// The producer's enqueue calls in the latency phase.
    pub enqueue_call: Option<Percentiles>,
    /// The rate the producer achieved, jobs/s, and the latest an enqueue started past its due instant.
    pub latency_offered_rate: Option<f64>,
    pub producer_max_lag_ms: Option<f64>,
    /// Latency phase: (handler calls, distinct jobs, extra calls).
    pub latency_check: Option<(u64, u64, u64)>,
    /// riverqueue: its own output, and its p95 (under the burn-down backlog, not comparable).
    pub river_output: Option<String>,
    pub river_p95_secs: Option<f64>,
    /// Every check held (`None`: the system's own bench checked, not read back here).
    pub verified: Option<bool>,
    pub problems: Vec<String>,
    pub error: Option<String>,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned()
}

impl SystemRun {
    pub fn new(system: System, run: usize) -> SystemRun {
        SystemRun {
            system,
            backend: system.backend(),
            run,
            started_at: jiff::Timestamp::now().to_string(),
            load_before: loadavg(),
            load_after: String::new(),
            version: None,
            settings: None,
            enqueue_jobs_per_sec: None,
            drain_jobs_per_sec: None,
            drain: None,
            latency: None,
            enqueue_call: None,
            latency_offered_rate: None,
            producer_max_lag_ms: None,
            latency_check: None,
            river_output: None,
            river_p95_secs: None,
            verified: None,
            problems: Vec::new(),
            error: None,
        }
    }

    /// Checks what was measured: exactly `jobs` distinct completions, none twice.
    pub fn finish(&mut self, args: &QueueArgs, error: Option<String>) {
        self.load_after = loadavg();
        self.error = error;
        let mut problems = Vec::new();
        let mut check = |ok: bool, what: String| {
            if !ok {
                problems.push(what);
            }
        };
        if let Some(d) = &self.drain {
            let n = args.jobs;
            check(d.handled == n, format!("drain: {} handler calls for {n} jobs", d.handled));
            check(d.distinct == n, format!("drain: {} distinct jobs handled of {n}", d.distinct));
            check(d.duplicates == 0, format!("drain: {} jobs ran more than once", d.duplicates));
            let s = &d.store;
            check(s.completed.is_none_or(|c| c == n), format!("drain: the store records {:?} completed", s.completed));
            check(s.distinct.is_none_or(|c| c == n), format!("drain: {:?} distinct payloads completed", s.distinct));
            check(s.run_twice.is_none_or(|c| c == 0), format!("drain: the store says {:?} ran twice", s.run_twice));
            check(s.unfinished.is_none_or(|c| c == 0), format!("drain: {:?} jobs left unfinished", s.unfinished));
        }
        if let Some((handled, distinct, duplicates)) = self.latency_check {
            let m = args.latency_jobs;
            check(
                handled == m && distinct == m && duplicates == 0,
                format!("latency: {handled} calls, {distinct} distinct of {m}"),
            );
        }
        self.verified = match (&self.error, self.system) {
            (Some(_), _) => Some(false),
            (None, System::Riverqueue) => None,
            (None, _) => Some(problems.is_empty() && self.drain.is_some() && self.latency.is_some()),
        };
        self.problems = problems;
    }

    fn ok(&self) -> bool {
        self.error.is_none() && self.verified != Some(false)
    }

    pub fn one_line(&self) -> String {
        if let Some(e) = &self.error {
            return format!("FAILED: {e}");
        }
        let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
        let l = self.latency.map_or("-".to_owned(), |l| format!("{:.1} / {:.1} ms", l.p50_ms, l.p99_ms));
        format!(
            "enqueue {} jobs/s, drain {} jobs/s, latency p50/p99 {l}, verified {:?} {:?} (load {})",
            f(self.enqueue_jobs_per_sec),
            f(self.drain_jobs_per_sec),
            self.verified,
            self.problems,
            self.load_before
        )
    }
}

/// Median, lowest and highest of the runs that held.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Stat {
    fn of(values: impl Iterator<Item = f64>) -> Option<Stat> {
        let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 };
        Some(Stat { median, min: v[0], max: v[v.len() - 1], runs: v.len() })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub system: System,
    pub backend: &'static str,
    pub version: Option<String>,
    pub settings: Option<serde_json::Value>,
    pub runs: usize,
    pub runs_ok: usize,
    pub enqueue_jobs_per_sec: Option<Stat>,
    pub drain_jobs_per_sec: Option<Stat>,
    pub latency_p50_ms: Option<Stat>,
    pub latency_p90_ms: Option<Stat>,
    pub latency_p99_ms: Option<Stat>,
    pub latency_max_ms: Option<Stat>,
}

impl Summary {
    fn of(system: System, runs: &[&SystemRun]) -> Summary {
        let ok: Vec<&&SystemRun> = runs.iter().filter(|r| r.ok()).collect();
        let lat = |f: fn(&Percentiles) -> f64| Stat::of(ok.iter().filter_map(|r| r.latency.as_ref().map(f)));
        Summary {
            system,
            backend: system.backend(),
            version: runs.iter().find_map(|r| r.version.clone()),
            settings: runs.iter().find_map(|r| r.settings.clone()),
            runs: runs.len(),
            runs_ok: ok.len(),
            enqueue_jobs_per_sec: Stat::of(ok.iter().filter_map(|r| r.enqueue_jobs_per_sec)),
            drain_jobs_per_sec: Stat::of(ok.iter().filter_map(|r| r.drain_jobs_per_sec)),
            latency_p50_ms: lat(|l| l.p50_ms),
            latency_p90_ms: lat(|l| l.p90_ms),
            latency_p99_ms: lat(|l| l.p99_ms),
            latency_max_ms: lat(|l| l.max_ms),
        }
    }
}

/// questline against the best peer on one backend (medians): throughputs as questline ÷
/// peer, latencies as peer ÷ questline, so that 2.0 or more meets the target either way.
#[derive(Debug, Clone, Serialize)]
pub struct Reading {
    pub backend: &'static str,
    pub questline: Option<System>,
    pub drain: Option<(System, f64)>,
    pub enqueue: Option<(System, f64)>,
    pub latency_p50: Option<(System, f64)>,
    pub latency_p99: Option<(System, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Params {
    /// The questline commit measured (`git describe` of the working directory).
    pub commit: Option<String>,
    pub jobs: u64,
    pub concurrency: usize,
    pub latency_jobs: u64,
    pub rate: f64,
    pub runs: usize,
    pub systems: Vec<System>,
    pub poll_ms: Option<u64>,
    pub analyze_after_enqueue: bool,
    /// The PostgreSQL server's `autovacuum` setting (off here: fresh tables have no statistics).
    pub postgres_autovacuum: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueReport {
    pub benchmark: &'static str,
    pub started_at: String,
    pub command: String,
    pub machine: Machine,
    pub params: Params,
    pub summary: Vec<Summary>,
    pub target: Vec<Reading>,
    pub runs: Vec<SystemRun>,
}

impl QueueReport {
    pub fn new(args: &QueueArgs, machine: &Machine, started_at: jiff::Timestamp, runs: &[SystemRun]) -> QueueReport {
        let summary: Vec<Summary> = args
            .systems
            .iter()
            .map(|s| Summary::of(*s, &runs.iter().filter(|r| r.system == *s).collect::<Vec<_>>()))
            .collect();
        let target = ["postgres", "sqlite", "redis"].into_iter().map(|b| reading(b, &summary)).collect();
        QueueReport {
            benchmark: "queue",
            started_at: started_at.to_string(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            machine: machine.clone(),
            params: Params {
                commit: commit(),
                jobs: args.jobs,
                concurrency: args.concurrency,
                latency_jobs: args.latency_jobs,
                rate: args.rate,
                runs: args.runs,
                systems: args.systems.clone(),
                poll_ms: args.poll_ms,
                analyze_after_enqueue: args.analyze_after_enqueue,
                postgres_autovacuum: None,
            },
            summary,
            target,
            runs: runs.to_vec(),
        }
    }

    /// `OUT/LABEL-summary.json` (everything) and `OUT/LABEL-SYSTEM.json` (each system's runs).
    pub fn write(&self, out: &Path, label: &str) -> Result<()> {
        std::fs::write(out.join(format!("{label}-summary.json")), serde_json::to_string_pretty(self)?)?;
        for s in &self.summary {
            let runs: Vec<&SystemRun> = self.runs.iter().filter(|r| r.system == s.system).collect();
            let one = serde_json::json!({"benchmark": "queue", "params": self.params, "machine": self.machine,
                                         "summary": s, "runs": runs});
            std::fs::write(out.join(format!("{label}-{}.json", s.system.name())), serde_json::to_string_pretty(&one)?)?;
        }
        Ok(())
    }
}

pub(crate) fn commit() -> Option<String> {
    let out = std::process::Command::new("git").args(["describe", "--always", "--dirty"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn reading(backend: &'static str, summary: &[Summary]) -> Reading {
    let ours = summary.iter().find(|s| s.backend == backend && s.system.is_questline());
    let peers: Vec<&Summary> = summary.iter().filter(|s| s.backend == backend && !s.system.is_questline()).collect();
    let med = |s: Option<Stat>| s.map(|s| s.median);
    // The best peer on a measure, and questline's factor over it.
    let best = |f: &dyn Fn(&Summary) -> Option<f64>, higher_is_better: bool| -> Option<(System, f64)> {
        let q = f(ours?)?;
        let (peer, p) = peers
            .iter()
            .filter_map(|s| f(s).map(|v| (s.system, v)))
            .reduce(|a, b| if (b.1 > a.1) == higher_is_better { b } else { a })?;
        Some((peer, if higher_is_better { q / p } else { p / q }))
    };
    Reading {
        backend,
        questline: ours.map(|s| s.system),
        drain: best(&|s| med(s.drain_jobs_per_sec), true),
        enqueue: best(&|s| med(s.enqueue_jobs_per_sec), true),
        latency_p50: best(&|s| med(s.latency_p50_ms), false),
        latency_p99: best(&|s| med(s.latency_p99_ms), false),
    }
}

impl fmt::Display for QueueReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        writeln!(
            f,
            "queue benchmark: {} jobs drained at concurrency {}; {} jobs one per call at {}/s; median of {} runs",
            p.jobs, p.concurrency, p.latency_jobs, p.rate, p.runs
        )?;
        writeln!(
            f,
            "{:<20} {:<9} {:>5} {:>12} {:>12} {:>10} {:>10} {:>10}",
            "system", "backend", "ok", "enqueue/s", "drain/s", "p50 ms", "p99 ms", "max ms"
        )?;
        let m = |s: Option<Stat>| s.map_or("-".to_owned(), |s| format!("{:.0}", s.median));
        let ms = |s: Option<Stat>| s.map_or("-".to_owned(), |s| format!("{:.1}", s.median));
        for s in &self.summary {
            writeln!(
                f,
                "{:<20} {:<9} {:>5} {:>12} {:>12} {:>10} {:>10} {:>10}",
                s.system.name(),
                s.backend,
                format!("{}/{}", s.runs_ok, s.runs),
                m(s.enqueue_jobs_per_sec),
                m(s.drain_jobs_per_sec),
                ms(s.latency_p50_ms),
                ms(s.latency_p99_ms),
                ms(s.latency_max_ms)
            )?;
        }
        for r in &self.target {
            let show = |x: &Option<(System, f64)>| x.map_or("-".to_owned(), |(s, v)| format!("{v:.2}× {}", s.name()));
            writeln!(
                f,
                "target on {}: drain {}, enqueue {}, p50 {}, p99 {} (≥ 2 meets it)",
                r.backend,
                show(&r.drain),
                show(&r.enqueue),
                show(&r.latency_p50),
                show(&r.latency_p99)
            )?;
        }
        for r in self.runs.iter().filter(|r| !r.ok()) {
            writeln!(f, "run {} of {}: {:?} {:?}", r.run, r.system.name(), r.error, r.problems)?;
        }
        Ok(())
    }
}
