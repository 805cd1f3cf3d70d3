//! The command line and the configuration file, through the real binary: what a start with
//! a bad configuration says and how it exits, and what `--help` tells.

use std::process::{Command, Output};

/// `questline ARGS` in `dir`, with none of the caller's `QUESTLINE_*` settings.
fn questline(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(crate::QUESTLINE);
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("QUESTLINE_")) {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    command.output().expect("run questline")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unknown_keys_and_sections_in_the_config_file_fail_the_start_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("questline.toml");
    let url = format!("sqlite://{}", dir.path().join("q.db").display());
    for (text, named) in [("listn = \"127.0.0.1:0\"\n", "listn"), ("[server]\nlisten = \"127.0.0.1:0\"\n", "server")] {
        std::fs::write(&file, text).unwrap();
        let file = file.to_str().unwrap();
        for args in [
            &["serve", "--config", file, "--listen", "127.0.0.1:0", "--database-url", &url][..],
            &["migrate", "--config", file, "--database-url", &url][..],
        ] {
            let out = questline(dir.path(), args, &[]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            assert!(err.starts_with("questline: invalid configuration: "), "{err}");
            assert!(err.contains(&format!("{named}: unknown key")) && err.contains("questline.toml"), "{err}");
        }
    }
    assert!(!dir.path().join("q.db").exists(), "nothing was started");
}

#[test]
fn unknown_questline_variables_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("q.db").display());
    let out = questline(dir.path(), &["migrate"], &[("QUESTLINE_DATABASE_URL", &url), ("QUESTLINE_LISTN", "x")]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.lines().any(|l| l.contains("QUESTLINE_LISTN") && l.contains("not a questline setting")), "{err}");
    assert!(!err.contains("QUESTLINE_DATABASE_URL"), "a known variable is not warned about: {err}");
}

#[test]
fn demo_refuses_a_database_url() {
    let dir = tempfile::tempdir().unwrap();
    let out = questline(dir.path(), &["demo", "--exit", "--database-url", "sqlite://mine.db"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--database-url"), "{err}");
    assert!(out.stdout.is_empty(), "the demo did not start: {}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn help_names_the_environment_variables() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["serve", "api", "worker", "migrate", "demo"] {
        let out = questline(dir.path(), &[command, "--help"], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        let help = String::from_utf8_lossy(&out.stdout);
        for variable in [
            "QUESTLINE_LISTEN",
            "QUESTLINE_DATABASE_URL",
            "QUESTLINE_LOG_FORMAT",
            "QUESTLINE_ADMIN_KEY",
            "QUESTLINE_JWT_SECRET",
            "QUESTLINE_REDIS_URL",
            "QUESTLINE_WORKER_CONCURRENCY",
        ] {
            assert!(help.contains(variable), "{command} --help does not name {variable}:\n{help}");
        }
    }
    let serve = questline(dir.path(), &["serve", "--help"], &[]);
    let help = String::from_utf8_lossy(&serve.stdout);
    // each flag says which variable it overrides
    for (flag, variable) in [
        ("--listen", "QUESTLINE_LISTEN"),
        ("--database-url", "QUESTLINE_DATABASE_URL"),
        ("--log-format", "QUESTLINE_LOG_FORMAT"),
    ] {
        let line = help.lines().skip_while(|l| !l.trim_start().starts_with(flag)).take(3).collect::<Vec<_>>().join(" ");
        assert!(line.contains(&format!("[env: {variable}]")), "{flag}: {line}\n{help}");
    }
}

#[tokio::test]
async fn migrate_applies_the_store_and_the_job_queue_migrations() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("q.db").display());
    for run in ["first", "second"] {
        let out = questline(dir.path(), &["migrate", "--database-url", &url], &[]);
        assert!(out.status.success(), "{run} migrate: {}", stderr(&out));
    }
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version").fetch_all(&mut conn).await.unwrap();
    assert!(versions.contains(&1) && versions.contains(&1001), "the store's and the queue's: {versions:?}");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM queue_jobs").fetch_one(&mut conn).await.unwrap();
    assert_eq!(jobs, 0, "the queue's table exists, empty");
}
