//! The Lua scripts, each one atomic state change (Redis runs one script at a time, so no
//! other command sees a change half made). Each is `lib.lua` (how jobs are stored and
//! indexed, written once) followed by the script's own part; `redis::Script` sends it by
//! `EVALSHA`, loading it first where the server does not know it yet.

use redis::Script;

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(include_str!("lua/lib.lua"), "\n", include_str!(concat!("lua/", $file))))
    };
}

pub(super) struct Scripts {
    /// New jobs, deduplicated by id (the outbox relay) and by unique key.
    pub enqueue: Script,
    /// A periodic schedule's tick and its job, once per tick.
    pub tick: Script,
    /// Promotes the due jobs, then claims by priority and `run_at` within concurrency limits.
    pub claim: Script,
    /// Writes back what `transition.rs` decided, if the job did not change meanwhile.
    pub put: Script,
    pub heartbeat: Script,
    pub prune: Script,
    /// Read-only: the queue depth.
    pub depth: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            enqueue: script!("enqueue.lua"),
            tick: script!("tick.lua"),
            claim: script!("claim.lua"),
            put: script!("put.lua"),
            heartbeat: script!("heartbeat.lua"),
            prune: script!("prune.lua"),
            depth: script!("depth.lua"),
        }
    }
}
