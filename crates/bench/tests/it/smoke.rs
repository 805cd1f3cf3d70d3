//! A short run of the whole ingest benchmark on SQLite, so that CI exercises the harness
//! (workload, server in-process, HTTP load, reference, verification, report, plot) without a
//! long run.

use clap::Parser;
use questline_bench::Cli;

fn args(out: &std::path::Path, extra: &[&str]) -> questline_bench::IngestArgs {
    let mut argv = vec!["questline-bench", "ingest", "--users", "1000", "--missions", "5", "--events", "2000"];
    argv.extend(["--clients", "4", "--batch", "100", "--quiet", "--out", out.to_str().unwrap()]);
    argv.extend(extra);
    let Cli::Ingest(args) = Cli::parse_from(argv) else { panic!("not the ingest command") };
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_counts_every_acknowledged_event_once_and_beats_nothing() {
    let out = tempfile::tempdir().unwrap();
    let report = questline_bench::ingest(&args(out.path(), &["--resend-check"])).await.unwrap();

    let e = &report.engine;
    assert!(e.events_per_sec > 0.0, "{report}");
    assert_eq!((e.sent, e.rejected, e.failed_requests), (2000, 0, 0), "{report}");
    // Every acknowledged event is in the ledger exactly once; duplicates are the resends.
    let v = &report.verification;
    assert!(v.ok, "{report}");
    assert_eq!(e.accepted + e.duplicates, e.sent);
    assert!(e.duplicates > 0 && e.duplicates < 100, "about 2% of 2000: {report}");
    assert_eq!(v.ledger_rows, v.expected_new);
    assert_eq!(v.resend, Some((2000, 0, 2000)), "a resend changes nothing");
    assert!(e.database.progress_rows > 0, "the missions saw traffic: {report}");

    let r = report.reference.as_ref().expect("the reference runs in max mode");
    assert_eq!(r.events, 2000);
    assert_eq!(r.database.ledger_rows, v.expected_new, "the reference wrote the same ledger rows");
    assert!(r.events_per_sec > 0.0 && report.share_of_reference.is_some_and(|s| s > 0.0));
    assert!(e.latency.requests >= 20 && e.latency.p99_ms >= e.latency.p50_ms);

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("ingest-sqlite-max.json")).unwrap()).unwrap();
    assert_eq!(json["engine"]["sent"], 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_loop_paces_requests_at_the_rate() {
    let out = tempfile::tempdir().unwrap();
    // 2000 events at 4000/s: about half a second of 20 batches due every 25 ms.
    let report = questline_bench::ingest(&args(out.path(), &["--rate", "4000", "--no-plot"])).await.unwrap();
    assert!(report.verification.ok, "{report}");
    assert!(report.reference.is_none(), "no reference at a fixed rate");
    let e = &report.engine;
    assert!(e.elapsed_secs >= 0.45, "paced, not as fast as possible: {report}");
    assert!(e.events_per_sec <= 4400.0, "{report}");
}
