//! Configuration: defaults, then a TOML file (`--config FILE`), then `QUESTLINE_*`
//! environment variables, then command-line flags; each layer overrides the one before.
//!
//! Loaded and validated once at start-up, then passed explicitly: nothing reads the
//! environment after this. A bad value fails the start with a message that names its key.

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;

/// The shortest admin key and JWT secret accepted: shorter ones are guessable.
pub const MIN_SECRET_LEN: usize = 16;

/// Jobs a worker runs at once unless `worker_concurrency` says otherwise.
pub const DEFAULT_WORKER_CONCURRENCY: usize = 16;
/// The most jobs one worker may run at once.
pub const MAX_WORKER_CONCURRENCY: usize = 1024;
/// How long, in seconds, a job's claim holds without a heartbeat unless `worker_lease_seconds`
/// says otherwise: a worker that dies mid-job has that job retried about this long after.
pub const DEFAULT_WORKER_LEASE_SECONDS: u64 = 30;

/// A key the file sets that is not one of these fails the start, naming it: a misspelt key
/// (`listn`) or a section of another program's (`[server]`) would otherwise leave the
/// default in force in silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP listen address (`QUESTLINE_LISTEN`).
    pub listen: SocketAddr,
    /// `sqlite://PATH` or `postgres://…` (`QUESTLINE_DATABASE_URL`).
    pub database_url: String,
    /// A secret that is made an admin API key at start-up (`QUESTLINE_ADMIN_KEY`).
    pub admin_key: Option<String>,
    /// HS256 secret for user tokens on `/v1/me/...` (`QUESTLINE_JWT_SECRET`).
    pub jwt_secret: Option<String>,
    /// Redis, where a feature uses it (`QUESTLINE_REDIS_URL`).
    pub redis_url: Option<String>,
    /// `text` (default) or `json` logs, on standard error (`QUESTLINE_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// Jobs the job worker runs at once, 1 to 1024 (`QUESTLINE_WORKER_CONCURRENCY`).
    pub worker_concurrency: usize,
    /// Seconds a job's claim holds without a heartbeat, 2 to 3600
    /// (`QUESTLINE_WORKER_LEASE_SECONDS`): how soon a dead worker's jobs run again.
    pub worker_lease_seconds: u64,
    /// The prefix of every Redis key of this deployment's fast lane
    /// (`QUESTLINE_REDIS_NAMESPACE`): deployments sharing a Redis keep apart by it.
    pub redis_namespace: String,
    /// Jobs claimed ahead of free slots, 0 to 10000 (`QUESTLINE_WORKER_PREFETCH`; default:
    /// the concurrency).
    pub worker_prefetch: Option<usize>,
    /// 32 bytes, base64: the key webhook secrets are sealed with (`QUESTLINE_SECRET_KEY`).
    /// Without one, SQLite keeps a generated key in `<database file>.key`; PostgreSQL has
    /// no webhooks.
    pub secret_key: Option<String>,
    /// Lets webhooks call loopback and private addresses (`QUESTLINE_ALLOW_PRIVATE_TARGETS`).
    pub allow_private_targets: bool,
    /// Message jobs held at once (each asleep until its slot, at most 2 s ahead), 1 to
    /// 100000 (`QUESTLINE_DISPATCH_CONCURRENCY`).
    pub dispatch_concurrency: usize,
    /// Message providers (`[[providers]]`, file only): see API.md, "Messages and providers".
    #[serde(default)]
    pub providers: Vec<crate::dispatch::config::ProviderConfig>,
    /// Message templates (`[[templates]]`, file only).
    #[serde(default)]
    pub templates: Vec<crate::dispatch::config::TemplateConfig>,
}

/// Messages being sent at once unless `dispatch_concurrency` says otherwise. A send holds
/// its claim only for a slot at most 2 s ahead (a later one is booked on the message and the
/// job comes back 1.5 s before it), so this many keep providers busy up to about a third of
/// it in messages a second together (20,000: some 7,000/s); a waiting send holds a few
/// kilobytes.
pub const DEFAULT_DISPATCH_CONCURRENCY: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://questline.db".into(),
            admin_key: None,
            jwt_secret: None,
            redis_url: None,
            log_format: LogFormat::Text,
            worker_concurrency: DEFAULT_WORKER_CONCURRENCY,
            worker_lease_seconds: DEFAULT_WORKER_LEASE_SECONDS,
            redis_namespace: "questline".to_owned(),
            worker_prefetch: None,
            secret_key: None,
            allow_private_targets: false,
            dispatch_concurrency: DEFAULT_DISPATCH_CONCURRENCY,
            providers: Vec::new(),
            templates: Vec::new(),
        }
    }
}

/// Values given as command-line flags: the last layer. `None` leaves the layer below alone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Loads the layers in order and validates the result. `env` is the process
    /// environment as `(name, value)` pairs, passed in so that tests need not touch the
    /// real one.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError(format!("config file {} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only the variables we know: a stray QUESTLINE_SOMETHING must not fail the start,
        // and empty ones count as unset (a common way to "unset" in CI and compose files).
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter_map(|(name, value)| {
                let key = name.strip_prefix("QUESTLINE_")?.to_ascii_lowercase();
                (KEYS.contains(&key.as_str()) && !value.is_empty()).then_some((key, value))
            })
            .collect();
        for (key, value) in env {
            // A number's text is read as a number; other values stay text (a secret of
            // digits is still a string). Text that is no number fails the extraction below.
            let flag = match value.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => None,
            };
            match (value.trim().parse::<i64>(), flag) {
                (Ok(n), _) if NUMBER_KEYS.contains(&key.as_str()) => {
                    figment = figment.merge(Serialized::default(&key, n))
                }
                (_, Some(b)) if BOOL_KEYS.contains(&key.as_str()) => {
                    figment = figment.merge(Serialized::default(&key, b))
                }
                _ => figment = figment.merge(Serialized::default(&key, value)),
            }
        }
        figment = figment.merge(Serialized::defaults(overrides));

        let config: Config = figment.extract().map_err(|e| ConfigError(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// The `QUESTLINE_*` variables of `env` that name no setting, e.g. a misspelt
    /// `QUESTLINE_LISTN`. They do not fail the start (the test harness and scripts have
    /// `QUESTLINE_*` variables of their own, which a server inherits), but the binary warns
    /// about each, so that a misspelling is not silently without effect.
    pub fn unknown_env(env: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
        let mut unknown: Vec<String> = env
            .into_iter()
            .filter(|(name, _)| {
                name.strip_prefix("QUESTLINE_").is_some_and(|key| !KEYS.contains(&key.to_ascii_lowercase().as_str()))
            })
            .map(|(name, _)| name)
            .collect();
        unknown.sort();
        unknown
    }

    /// Loads from the real process environment.
    pub fn from_env(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        Self::load(file, std::env::vars(), overrides)
    }

    /// Checks what types alone cannot; names the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        if let Some(key) = &self.admin_key {
            if key.chars().count() < MIN_SECRET_LEN {
                return bad("admin_key", &format!("must be at least {MIN_SECRET_LEN} characters"));
            }
            if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return bad("admin_key", "must not contain whitespace");
            }
        }
        if self.jwt_secret.as_ref().is_some_and(|s| s.len() < MIN_SECRET_LEN) {
            return bad("jwt_secret", &format!("must be at least {MIN_SECRET_LEN} bytes"));
        }
        let url = self.database_url.as_str();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return bad("database_url", "expected sqlite://PATH or postgres://…");
        }
        let redis_ok = |url: &String| url.starts_with("redis://") || url.starts_with("rediss://");
        if self.redis_url.as_ref().is_some_and(|url| !redis_ok(url)) {
            return bad("redis_url", "expected redis://… or rediss://…");
        }
        if !(1..=MAX_WORKER_CONCURRENCY).contains(&self.worker_concurrency) {
            return bad("worker_concurrency", WORKER_CONCURRENCY_RANGE);
        }
        if !(2..=3600).contains(&self.worker_lease_seconds) {
            return bad("worker_lease_seconds", WORKER_LEASE_RANGE);
        }
        let ns = &self.redis_namespace;
        if ns.is_empty() || ns.len() > 64 || !ns.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) {
            return bad("redis_namespace", "1 to 64 of a-z, A-Z, 0-9, '-', '_', '.' and ':'");
        }
        if self.worker_prefetch.is_some_and(|p| p > 10_000) {
            return bad("worker_prefetch", WORKER_PREFETCH_RANGE);
        }
        if let Some(key) = &self.secret_key
            && let Err(why) = questline_service::webhooks::SecretKey::from_base64(key)
        {
            return bad("secret_key", why);
        }
        if !(1..=100_000).contains(&self.dispatch_concurrency) {
            return bad("dispatch_concurrency", "must be an integer from 1 to 100000");
        }
        crate::dispatch::config::validate(&self.providers, &self.templates).map_err(ConfigError)?;
        Ok(())
    }
}

/// The keys a `QUESTLINE_*` variable may set.
const KEYS: &[&str] = &[
    "listen",
    "database_url",
    "admin_key",
    "jwt_secret",
    "redis_url",
    "log_format",
    "worker_concurrency",
    "worker_lease_seconds",
    "worker_prefetch",
    "redis_namespace",
    "secret_key",
    "allow_private_targets",
    "dispatch_concurrency",
];

/// The keys whose value is a number.
const NUMBER_KEYS: &[&str] = &["worker_concurrency", "worker_lease_seconds", "worker_prefetch", "dispatch_concurrency"];

/// The keys whose value is `true` or `false` (`1`, `0`).
const BOOL_KEYS: &[&str] = &["allow_private_targets"];

const WORKER_CONCURRENCY_RANGE: &str = "must be an integer from 1 to 1024";
const WORKER_LEASE_RANGE: &str = "must be an integer number of seconds from 2 to 3600";
const WORKER_PREFETCH_RANGE: &str = "must be an integer from 0 to 10000";

/// Figment's error, phrased around the key (never echoing a secret's value), with the file
/// it came from when it came from one.
fn describe(e: figment::Error) -> String {
    let key = e.path.join(".");
    let key = if key.is_empty() { "config".to_owned() } else { key };
    let what = match &e.kind {
        // Whatever serde's words for it (a string, a negative number, too large), one rule.
        _ if key == "worker_concurrency" => format!("{key}: {WORKER_CONCURRENCY_RANGE}"),
        _ if key == "worker_lease_seconds" => format!("{key}: {WORKER_LEASE_RANGE}"),
        _ if key == "worker_prefetch" => format!("{key}: {WORKER_PREFETCH_RANGE}"),
        figment::error::Kind::InvalidType(_, expected) => format!("{key}: expected {expected}"),
        figment::error::Kind::InvalidValue(_, expected) => format!("{key}: invalid value, expected {expected}"),
        figment::error::Kind::UnknownVariant(got, expected) => {
            format!("{key}: unknown value {got:?}, expected one of {}", expected.join(", "))
        }
        figment::error::Kind::UnknownField(field, _) => format!("{field}: unknown key"),
        figment::error::Kind::Message(message) => format!("{key}: {message}"),
        _ => format!("{key}: {}", e.kind),
    };
    match e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
        Some(figment::Source::File(path)) => format!("{what} (in {})", path.display()),
        _ => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_apply_without_any_layer() {
        let config = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn flags_override_environment_which_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("questline.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:1\"\ndatabase_url = \"sqlite://file.db\"\nredis_url = \"redis://file\"\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&file),
            env(&[
                ("QUESTLINE_DATABASE_URL", "sqlite://env.db"),
                ("QUESTLINE_LISTEN", "0.0.0.0:2"),
                ("QUESTLINE_LOG_FORMAT", "json"),
                ("QUESTLINE_UNRELATED", "x"),
                ("QUESTLINE_JWT_SECRET", ""),
            ]),
            &Overrides { listen: Some("127.0.0.1:3".into()), ..Overrides::default() },
        )
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:3".parse().unwrap());
        assert_eq!(config.database_url, "sqlite://env.db");
        assert_eq!(config.redis_url.as_deref(), Some("redis://file"));
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.jwt_secret, None);
    }

    #[test]
    fn bad_values_name_their_key() {
        let load =
            |pairs: &[(&str, &str)]| Config::load(None, env(pairs), &Overrides::default()).unwrap_err().to_string();
        assert!(load(&[("QUESTLINE_LISTEN", "nowhere")]).contains("listen"));
        assert!(load(&[("QUESTLINE_ADMIN_KEY", "short")]).contains("admin_key"));
        assert!(!load(&[("QUESTLINE_ADMIN_KEY", "short")]).contains("short"), "never echo a secret");
        assert!(load(&[("QUESTLINE_JWT_SECRET", "short")]).contains("jwt_secret"));
        assert!(load(&[("QUESTLINE_LOG_FORMAT", "xml")]).contains("log_format"));
        assert!(load(&[("QUESTLINE_DATABASE_URL", "mysql://x")]).contains("database_url"));
        for bad in ["0", "1025", "-1", "sixteen", "1.5", "99999999999999999999"] {
            let err = load(&[("QUESTLINE_WORKER_CONCURRENCY", bad)]);
            assert_eq!(err, "invalid configuration: worker_concurrency: must be an integer from 1 to 1024", "{bad}");
        }
    }

    #[test]
    fn worker_concurrency_comes_from_the_environment_or_the_file() {
        let concurrency =
            |pairs: &[(&str, &str)]| Config::load(None, env(pairs), &Overrides::default()).unwrap().worker_concurrency;
        assert_eq!(concurrency(&[]), DEFAULT_WORKER_CONCURRENCY);
        assert_eq!(concurrency(&[("QUESTLINE_WORKER_CONCURRENCY", "1")]), 1);
        assert_eq!(concurrency(&[("QUESTLINE_WORKER_CONCURRENCY", " 1024 ")]), 1024);
        // a secret of digits stays a string
        let digits = Config::load(None, env(&[("QUESTLINE_ADMIN_KEY", "12345678901234567890")]), &Overrides::default());
        assert_eq!(digits.unwrap().admin_key.as_deref(), Some("12345678901234567890"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("questline.toml");
        std::fs::write(&file, "worker_concurrency = 4\n").unwrap();
        assert_eq!(Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap().worker_concurrency, 4);
        std::fs::write(&file, "worker_concurrency = \"4\"\n").unwrap();
        let err = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("worker_concurrency: must be an integer from 1 to 1024"), "{err}");
    }

    #[test]
    fn unknown_keys_and_sections_in_the_file_are_errors_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("questline.toml");
        for (text, named) in [
            ("listn = \"0.0.0.0:1\"\n", "listn"),
            ("listen = \"0.0.0.0:1\"\n\n[server]\nlisten = \"0.0.0.0:2\"\n", "server"),
            ("database-url = \"sqlite://x.db\"\n", "database-url"),
        ] {
            std::fs::write(&file, text).unwrap();
            let err = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap_err().to_string();
            assert!(err.contains(&format!("{named}: unknown key")) && err.contains("questline.toml"), "{text}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        // every known key is accepted
        let known = "listen = \"0.0.0.0:1\"\ndatabase_url = \"sqlite://f.db\"\nadmin_key = \"ql_0123456789abcdef\"\n\
                     jwt_secret = \"0123456789abcdef\"\nredis_url = \"redis://r\"\nlog_format = \"json\"\n\
                     worker_concurrency = 8\nallow_private_targets = true\n";
        std::fs::write(&file, known).unwrap();
        Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
    }

    #[test]
    fn the_worker_prefetch_defaults_to_the_concurrency() {
        let load = |pairs: &[(&str, &str)]| Config::load(None, env(pairs), &Overrides::default());
        assert_eq!(load(&[]).unwrap().worker_prefetch, None);
        assert_eq!(load(&[("QUESTLINE_WORKER_PREFETCH", "0")]).unwrap().worker_prefetch, Some(0));
        for bad in ["10001", "-1", "many"] {
            let err = load(&[("QUESTLINE_WORKER_PREFETCH", bad)]).unwrap_err().to_string();
            assert_eq!(err, format!("invalid configuration: worker_prefetch: {WORKER_PREFETCH_RANGE}"), "{bad}");
        }
    }

    #[test]
    fn the_worker_lease_is_bounded_seconds() {
        let load = |pairs: &[(&str, &str)]| Config::load(None, env(pairs), &Overrides::default());
        assert_eq!(load(&[]).unwrap().worker_lease_seconds, DEFAULT_WORKER_LEASE_SECONDS);
        assert_eq!(load(&[("QUESTLINE_WORKER_LEASE_SECONDS", "3")]).unwrap().worker_lease_seconds, 3);
        for bad in ["1", "3601", "-5", "ten", "2.5"] {
            let err = load(&[("QUESTLINE_WORKER_LEASE_SECONDS", bad)]).unwrap_err().to_string();
            assert_eq!(err, format!("invalid configuration: worker_lease_seconds: {WORKER_LEASE_RANGE}"), "{bad}");
        }
    }

    #[test]
    fn the_secret_key_and_private_targets_come_from_the_environment() {
        let load = |pairs: &[(&str, &str)]| Config::load(None, env(pairs), &Overrides::default());
        let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let config = load(&[("QUESTLINE_SECRET_KEY", key), ("QUESTLINE_ALLOW_PRIVATE_TARGETS", "true")]).unwrap();
        assert_eq!((config.secret_key.as_deref(), config.allow_private_targets), (Some(key), true));
        assert!(!load(&[("QUESTLINE_ALLOW_PRIVATE_TARGETS", "false")]).unwrap().allow_private_targets);
        assert!(!load(&[]).unwrap().allow_private_targets);
        let err = load(&[("QUESTLINE_SECRET_KEY", "c2hvcnQ=")]).unwrap_err().to_string();
        assert_eq!(err, "invalid configuration: secret_key: must be 32 bytes, base64-encoded");
        let err = load(&[("QUESTLINE_ALLOW_PRIVATE_TARGETS", "yes please")]).unwrap_err().to_string();
        assert!(err.contains("allow_private_targets") && !err.contains('\n'), "{err}");
    }

    #[test]
    fn unknown_questline_variables_are_listed_not_fatal() {
        let vars = env(&[
            ("QUESTLINE_LISTN", "0.0.0.0:1"),
            ("QUESTLINE_LISTEN", "0.0.0.0:2"),
            ("QUESTLINE_log_format", "json"),
            ("PATH", "/bin"),
            ("QUESTLINE_TEST_POSTGRES_URL", "postgres://x"),
        ]);
        assert_eq!(Config::unknown_env(vars.clone()), ["QUESTLINE_LISTN", "QUESTLINE_TEST_POSTGRES_URL"]);
        assert_eq!(Config::load(None, vars, &Overrides::default()).unwrap().listen, "0.0.0.0:2".parse().unwrap());
    }

    #[test]
    fn errors_from_the_file_name_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("questline.toml");
        std::fs::write(&file, "listen = 8080\n").unwrap();
        let err = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("listen") && err.contains("questline.toml"), "{err}");
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/q.toml")), env(&[]), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/q.toml"));
    }
}
