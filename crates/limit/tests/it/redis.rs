//! The Redis limiter across real OS processes: four `limit-hammer` processes (`src/bin/
//! hammer.rs`) on one Redis, each with many tasks reserving back to back, every granted slot
//! written to a file; the test merges the four admission logs and checks every window.
//!
//! - [`four_processes_never_overshoot`]: the shared Redis of the tests. Slots as Redis
//!   decided them (server time): at most `limit` in any effective window (µs), and in any
//!   window of the configured length starting at any millisecond; the wall-clock times (the
//!   answer's arrival plus the wait) too, the margin absorbing the replies' delays; and the
//!   limit used (most of `limit` per window granted).
//! - [`killed_redis_falls_back_to_a_share_and_comes_back`]: a private `redis-server` that
//!   the test starts, kills (SIGKILL) mid-run and starts again, empty. The whole run, Redis
//!   slots and local fallback slots together on one clock (the server runs on this machine),
//!   never holds more than `limit` in a window; the processes kept admitting during the
//!   outage (their local share), and admitted on Redis again after the restart.
//! - [`two_keys_and_a_hold_across_processes`]: a private server again; two processes decide
//!   on two rules of key `a` and one of the shared key `s` together, two on `b` and `s`;
//!   every rule holds on every key, and a hold on `s` by one process delays every slot on
//!   `s` that any process is granted after it.
//!
//! Under `QUESTLINE_SKIP_REDIS=1` they say so and return. Without the `redis-server` binary
//! (Debian's package `redis-server`, installed by `scripts/services/redis.sh`), the tests
//! that start their own fail, saying so.

use crate::windows::max_in_window;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HAMMER: &str = env!("CARGO_BIN_EXE_limit-hammer");
const PROCESSES: usize = 4;

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as u64
}

/// What every process of one run shares.
struct Run {
    url: String,
    ns: String,
    horizon_ms: u64,
    margin_ms: u64,
    timeout_ms: u64,
    start_unix_ms: u64,
    run_ms: u64,
    dir: tempfile::TempDir,
}

impl Run {
    fn new(url: String, ns: String, run_ms: u64) -> Self {
        Run {
            url,
            ns,
            horizon_ms: 300,
            margin_ms: 25,
            timeout_ms: 200,
            // Time for the processes to start, connect and hear each other's heartbeats.
            start_unix_ms: wall_ms() + 1500,
            run_ms,
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn out(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("hammer-{i}.jsonl"))
    }

    /// Process `i`, deciding on `rules` (`key:limit:window_ms,...`) with `workers` tasks.
    fn spawn(&self, i: usize, rules: &str, workers: usize, hold: Option<&str>) -> Child {
        let mut cmd = Command::new(HAMMER);
        cmd.args(["--url", &self.url, "--ns", &self.ns, "--rules", rules])
            .args(["--workers", &workers.to_string()])
            .args(["--horizon-ms", &self.horizon_ms.to_string()])
            .args(["--margin-ms", &self.margin_ms.to_string()])
            .args(["--timeout-ms", &self.timeout_ms.to_string()])
            .args(["--start-unix-ms", &self.start_unix_ms.to_string()])
            .args(["--run-ms", &self.run_ms.to_string()])
            .arg("--out")
            .arg(self.out(i))
            .stdin(Stdio::null());
        if let Some(hold) = hold {
            cmd.args(["--hold", hold]);
        }
        cmd.spawn().expect("start limit-hammer")
    }

    /// Waits for every process (each must exit 0) and reads their logs.
    fn finish(&self, children: Vec<Child>) -> Vec<Log> {
        let deadline = Instant::now() + Duration::from_millis(self.run_ms + 10_000);
        let mut logs = Vec::new();
        for (i, child) in children.into_iter().enumerate() {
            let mut child = KillOnDrop(child);
            let status = questline_testkit::eventually_blocking(
                &format!("limit-hammer {i} to finish"),
                deadline.saturating_duration_since(Instant::now()),
                || child.0.try_wait().expect("wait for limit-hammer").ok_or_else(|| "still running".to_owned()),
            );
            assert!(status.success(), "limit-hammer {i} failed: {status}");
            logs.push(Log::read(&self.out(i)));
        }
        logs
    }

    fn start_us(&self) -> u64 {
        self.start_unix_ms * 1000
    }
}

/// One granted slot, as a hammer wrote it.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Redis decided (else the local fallback).
    redis: bool,
    /// The slot in the Redis server's time, µs (Redis only).
    server_us: Option<u64>,
    /// The server's time at the decision, µs (Redis only).
    decided_us: Option<u64>,
    /// This machine's wall clock at the answer, plus the wait, µs.
    wall_us: u64,
    /// The live processes the fallback divided the limit by (local only).
    processes: Option<u64>,
}

impl Slot {
    /// The slot on one clock: the server's for Redis slots, the wall clock for local ones (the
    /// same clock when the server runs on this machine).
    fn time_us(&self) -> u64 {
        self.server_us.unwrap_or(self.wall_us)
    }
}

#[derive(Debug, Clone, Copy)]
struct Hold {
    called_us: u64,
    returned_us: u64,
    for_us: u64,
}

#[derive(Debug, Default)]
struct Log {
    slots: Vec<Slot>,
    holds: Vec<Hold>,
}

impl Log {
    fn read(path: &Path) -> Log {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let mut log = Log::default();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let n = |k: &str| v[k].as_u64();
            if v.get("hold").is_some() {
                log.holds.push(Hold {
                    called_us: n("called_us").unwrap(),
                    returned_us: n("returned_us").unwrap(),
                    for_us: n("for_us").unwrap(),
                });
            } else {
                log.slots.push(Slot {
                    redis: v["src"] == "redis",
                    server_us: n("server_us"),
                    decided_us: n("decided_us"),
                    wall_us: n("wall_us").unwrap(),
                    processes: n("processes"),
                });
            }
        }
        log
    }
}

/// Checks one rule over `slots` (the merged log of every process deciding on its key, µs):
/// at most `limit` in any window of the configured length starting at any millisecond
/// (times floored to the millisecond); with `exact`, also at most `limit` in any effective
/// window (the margin included) at the microsecond. Only times as one clock decided them are
/// exact: a local slot's time is read back from the wall clock, a few µs off. Returns the
/// largest count in a configured window.
fn check_rule(what: &str, slots: &[u64], limit: usize, window_ms: u64, margin_ms: u64, exact: bool) -> usize {
    if exact {
        let worst = max_in_window(slots, (window_ms + margin_ms) * 1000);
        let effective = window_ms + margin_ms;
        assert!(worst <= limit, "{what}: {worst} slots in an effective window of {effective} ms (limit {limit})");
    }
    let ms: Vec<u64> = slots.iter().map(|us| us / 1000).collect();
    let worst = max_in_window(&ms, window_ms);
    assert!(
        worst <= limit,
        "{what}: {worst} slots in a {window_ms} ms window starting at some millisecond (limit {limit})"
    );
    worst
}

/// The shared Redis of the tests, or the test's failure (`unavailable`).
fn shared_redis() -> String {
    let url = questline_testkit::redis::url();
    if let Err(e) = ping(&url, Duration::from_secs(2)) {
        questline_testkit::redis::unavailable(&e.to_string());
    }
    url
}

/// PING on a fresh connection.
fn ping(url: &str, timeout: Duration) -> ::redis::RedisResult<String> {
    ::redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(timeout))
        .and_then(|mut c| ::redis::cmd("PING").query::<String>(&mut c))
}

/// A child process killed if the test gives up on it (a panic unwinding past it).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `redis-server` of the test's own: no persistence, so a restart starts empty.
struct PrivateRedis {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let binary = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .iter()
            .map(PathBuf::from)
            .chain(std::env::var_os("PATH").iter().flat_map(std::env::split_paths).map(|d| d.join("redis-server")))
            .find(|p| p.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "this test starts (and kills) a redis-server of its own, and none was found \
                     (/usr/bin/redis-server or on PATH): install Debian's redis-server \
                     (scripts/services/redis.sh does), or set QUESTLINE_SKIP_REDIS=1 to skip the Redis tests"
                )
            });
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut redis =
            PrivateRedis { binary, dir: tempfile::tempdir().expect("a temporary directory"), port, child: None };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port) and waits until it answers.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let what = format!("the private redis-server on port {} to answer", self.port);
        questline_testkit::eventually_blocking(&what, Duration::from_secs(5), || {
            ping(&self.url(), Duration::from_millis(200)).map_err(|e| e.to_string())
        });
    }

    /// SIGKILL: no shutdown, no save.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill redis-server");
            child.wait().expect("reap redis-server");
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The test's script of faults runs on the wall clock the processes share: Redis is killed
/// and restarted at set times of the run, not when something is observed, so this is a
/// schedule, not a wait for a condition.
fn sleep_until_ms(unix_ms: u64) {
    std::thread::sleep(Duration::from_millis(unix_ms.saturating_sub(wall_ms())));
}

#[test]
fn four_processes_never_overshoot() {
    if questline_testkit::redis::skipped("redis::four_processes_never_overshoot") {
        return;
    }
    let url = shared_redis();
    let ns = questline_testkit::redis::Namespace::fresh();
    let (limit, window_ms) = (40usize, 250u64);
    let mut run = Run::new(url, ns.0.clone(), 3000);
    // No fallback wanted here: a loaded machine must not turn a slow answer into one.
    run.timeout_ms = 2000;
    let rules = format!("k:{limit}:{window_ms}");
    let children = (0..PROCESSES).map(|i| run.spawn(i, &rules, 12, None)).collect();
    let logs = run.finish(children);

    for (i, log) in logs.iter().enumerate() {
        assert!(!log.slots.is_empty(), "process {i} was granted nothing");
        assert!(log.slots.iter().all(|s| s.redis), "process {i} fell back with Redis up");
    }
    let slots: Vec<Slot> = logs.iter().flat_map(|l| l.slots.iter().copied()).collect();
    let server: Vec<u64> = slots.iter().map(|s| s.server_us.expect("a Redis slot")).collect();
    let worst = check_rule("server time", &server, limit, window_ms, run.margin_ms, true);
    // The wall clock at which each process would send: the margin covers the replies' delay.
    let wall: Vec<u64> = slots.iter().map(|s| s.wall_us).collect();
    let worst_wall = max_in_window(&wall.iter().map(|us| us / 1000).collect::<Vec<_>>(), window_ms);
    assert!(worst_wall <= limit, "wall clock: {worst_wall} slots in a {window_ms} ms window (limit {limit})");
    // And the limit is used: the processes asked for far more than it allows.
    let windows = run.run_ms / (window_ms + run.margin_ms);
    let floor = windows as usize * limit * 8 / 10;
    assert!(
        slots.len() >= floor,
        "only {} slots granted in {} ms (expected at least {floor})",
        slots.len(),
        run.run_ms
    );
    assert_eq!(worst, limit, "some window is full");
}

#[test]
fn killed_redis_falls_back_to_a_share_and_comes_back() {
    if questline_testkit::redis::skipped("redis::killed_redis_falls_back_to_a_share_and_comes_back") {
        return;
    }
    let mut redis = PrivateRedis::start();
    let (limit, window_ms) = (40usize, 250u64);
    let run = Run::new(redis.url(), questline_testkit::redis::fresh_namespace(), 7000);
    let rules = format!("k:{limit}:{window_ms}");
    let children = (0..PROCESSES).map(|i| run.spawn(i, &rules, 12, None)).collect();
    let kill_ms = run.start_unix_ms + 2000;
    let restart_ms = run.start_unix_ms + 4000;
    sleep_until_ms(kill_ms);
    redis.kill();
    let killed_us = wall_ms() * 1000;
    sleep_until_ms(restart_ms);
    redis.restart();
    let restarted_us = wall_ms() * 1000;
    let logs = run.finish(children);

    let slots: Vec<Slot> = logs.iter().flat_map(|l| l.slots.iter().copied()).collect();
    // The whole run on one clock, the Redis slots and the local ones together.
    let all: Vec<u64> = slots.iter().map(Slot::time_us).collect();
    check_rule("the whole run", &all, limit, window_ms, run.margin_ms, false);
    let wall: Vec<u64> = slots.iter().map(|s| s.wall_us / 1000).collect();
    let worst_wall = max_in_window(&wall, window_ms);
    assert!(worst_wall <= limit, "wall clock: {worst_wall} slots in a {window_ms} ms window (limit {limit})");

    let before = slots.iter().filter(|s| s.redis && s.time_us() < killed_us).count();
    let local: Vec<&Slot> = slots.iter().filter(|s| !s.redis).collect();
    let after = slots.iter().filter(|s| s.redis && s.time_us() > restarted_us).count();
    assert!(before > 0, "nothing granted on Redis before the kill");
    assert!(!local.is_empty(), "nothing granted during the outage: the fallback admitted nothing");
    assert!(local.iter().all(|s| s.wall_us > killed_us), "a local slot before Redis was killed");
    assert!(local.iter().all(|s| s.processes == Some(PROCESSES as u64)), "a share not of {PROCESSES} processes");
    assert!(after > 0, "nothing granted on Redis after the restart");
    // Each process fell back to its share, limit / 4: every process admitted locally.
    for (i, log) in logs.iter().enumerate() {
        let mine: Vec<u64> = log.slots.iter().filter(|s| !s.redis).map(|s| s.wall_us / 1000).collect();
        assert!(!mine.is_empty(), "process {i} admitted nothing in the outage");
        let share = max_in_window(&mine, window_ms);
        assert!(
            share <= limit / PROCESSES,
            "process {i}: {share} local slots in a window (its share is {})",
            limit / PROCESSES
        );
    }
    assert!(run.start_us() < killed_us);
}

#[test]
fn two_keys_and_a_hold_across_processes() {
    if questline_testkit::redis::skipped("redis::two_keys_and_a_hold_across_processes") {
        return;
    }
    let redis = PrivateRedis::start();
    let mut run = Run::new(redis.url(), questline_testkit::redis::fresh_namespace(), 3000);
    run.timeout_ms = 2000;
    // Key `a`: two rules; key `b`: one; key `s`, shared by all four processes: one.
    let (a1, a2, b, s) = ((15, 250), (40, 1000), (10, 200), (30, 250));
    let on_a = format!("a:{}:{},a:{}:{},s:{}:{}", a1.0, a1.1, a2.0, a2.1, s.0, s.1);
    let on_b = format!("b:{}:{},s:{}:{}", b.0, b.1, s.0, s.1);
    let hold = (1500, 400);
    let children = vec![
        run.spawn(0, &on_a, 8, None),
        run.spawn(1, &on_a, 8, None),
        run.spawn(2, &on_b, 8, None),
        run.spawn(3, &on_b, 8, Some(&format!("s:{}:{}", hold.0, hold.1))),
    ];
    let logs = run.finish(children);

    for (i, log) in logs.iter().enumerate() {
        assert!(!log.slots.is_empty(), "process {i} was granted nothing");
        assert!(log.slots.iter().all(|s| s.redis), "process {i} fell back with Redis up");
    }
    let times =
        |procs: &[usize]| -> Vec<u64> { procs.iter().flat_map(|&i| logs[i].slots.iter().map(Slot::time_us)).collect() };
    let margin = run.margin_ms;
    check_rule("a, first rule", &times(&[0, 1]), a1.0, a1.1, margin, true);
    check_rule("a, second rule", &times(&[0, 1]), a2.0, a2.1, margin, true);
    check_rule("b", &times(&[2, 3]), b.0, b.1, margin, true);
    check_rule("s", &times(&[0, 1, 2, 3]), s.0, s.1, margin, true);

    // The hold: every slot on `s` decided after the hold returned lies after its end.
    let [h] = logs[3].holds[..] else { panic!("process 3 did not hold") };
    assert_eq!(h.for_us, hold.1 * 1000);
    let later: Vec<Slot> = logs
        .iter()
        .flat_map(|l| l.slots.iter().copied())
        .filter(|s| s.decided_us.expect("a Redis slot") > h.returned_us)
        .collect();
    assert!(!later.is_empty(), "nothing granted after the hold");
    for slot in &later {
        assert!(
            slot.time_us() >= h.called_us + h.for_us,
            "a slot at {} µs, decided after a hold until at least {} µs",
            slot.time_us(),
            h.called_us + h.for_us
        );
    }
}
