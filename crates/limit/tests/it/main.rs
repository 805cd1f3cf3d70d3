//! questline-limit's tests: the local limiter's invariants (property tests), and the Redis
//! limiter across real OS processes, with Redis killed mid-run.

mod local;
mod paced;
mod redis;
mod refusals;
mod windows;
