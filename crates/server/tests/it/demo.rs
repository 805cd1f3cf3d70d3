//! `questline demo --exit`: the one-command tour runs to its summary.

use std::process::Command;

#[test]
fn the_demo_runs_and_summarises() {
    let out = Command::new(env!("CARGO_BIN_EXE_questline"))
        .args(["demo", "--exit", "--listen", "127.0.0.1:0"])
        .env_remove("QUESTLINE_ADMIN_KEY")
        .env_remove("QUESTLINE_DATABASE_URL")
        .output()
        .expect("run questline demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let number_after = |label: &str| -> u64 {
        let line =
            stdout.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("{label} in {stdout}"));
        line.trim_start()[label.len()..].split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(number_after("accepted") > 2000, "{stdout}");
    assert!(number_after("duplicates") > 0, "{stdout}");
    assert_eq!(number_after("rejected"), 0, "{stdout}");
    for mission in ["swiggy-500", "login-streak-5", "explorer-3"] {
        assert!(number_after(mission) > 0, "no completions of {mission}: {stdout}");
    }
    assert!(number_after("pending") > 0, "cash waits for its fulfilment webhook: {stdout}");
    assert!(number_after("granted") > 0, "the job worker settled points and badges: {stdout}");
    assert!(number_after("revoked") > 0, "refunds revoked nothing: {stdout}");
}
