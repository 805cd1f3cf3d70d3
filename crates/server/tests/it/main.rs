//! End-to-end tests: each starts the real `questline` binary on port 0 with a database of its
//! own, and speaks HTTP to it. One test binary; one module per area.
//!
//! The same suite runs against both backends. Each test is written once, as
//! `pub async fn test(backend: Backend)`, and the [`e2e!`] list below instantiates it as
//! `sqlite::MODULE::TEST` and `postgres::MODULE::TEST`. A test's server gets a fresh database
//! of the test's backend (a SQLite file in its temporary directory, or a PostgreSQL database
//! created for it and dropped with the server; see `questline_testkit`), so tests run in
//! parallel and share nothing.
//!
//! One backend: `cargo test -p questline-server --test it postgres::` (or `sqlite::`).
//!
//! PostgreSQL: databases are created on `QUESTLINE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`; `scripts/test` exports it, starting a
//! server if none runs). Without a reachable server the PostgreSQL tests FAIL. To run without
//! PostgreSQL, set `QUESTLINE_SKIP_POSTGRES=1`: each PostgreSQL test then prints
//! `SKIPPED (QUESTLINE_SKIP_POSTGRES=1): postgres test … did not run` and returns.
//!
//! `messages_smtp` sends e-mail to a private SMTP sink (Python's aiosmtpd, which
//! `scripts/test` installs if missing; see `questline_testkit::smtp`): without aiosmtpd those
//! tests FAIL, and `QUESTLINE_SKIP_SMTP=1` skips them with one `SKIPPED` line each.
//!
//! Outside the list: `cli` (the command line and configuration file, no database to speak
//! of), and, because they are about one setup only, `demo` (the embedded default
//! `questline demo` runs on) and `multiprocess` (several processes on one PostgreSQL
//! database, which SQLite, embedded in one process, cannot have).

mod auth;
mod cli;
mod crash;
mod demo;
mod durability;
mod events;
mod fixtures;
mod jobs;
mod keys;
mod messages;
mod messages_smtp;
mod mission_notices;
mod missions;
mod multiprocess;
mod notifications;
mod ops;
mod problems;
mod progress;
mod properties;
mod wallet;
mod webhooks;

use questline_testkit::{Backend, ServerOptions, TestServer};

/// The binary under test. Cargo tells only this crate's tests where it is, so testkit is told.
const QUESTLINE: &str = env!("CARGO_BIN_EXE_questline");

/// The binary under test on a fresh database of `backend`, with the admin key
/// [`questline_testkit::ADMIN_KEY`].
pub async fn start(backend: Backend) -> TestServer {
    start_with(ServerOptions::on(backend)).await
}

pub async fn start_with(options: ServerOptions) -> TestServer {
    TestServer::start(QUESTLINE, options).await
}

/// Instantiates each listed test once per backend, as `BACKEND::MODULE::TEST`.
macro_rules! e2e {
    (@backend $name:ident, $backend:expr, $($module:ident: [$($test:ident),* $(,)?]),* $(,)?) => {
        mod $name {
            $(mod $module {
                $(
                    #[tokio::test]
                    async fn $test() {
                        let backend = $backend;
                        if backend.skipped(concat!(stringify!($module), "::", stringify!($test))) {
                            return;
                        }
                        $crate::$module::$test(backend).await;
                    }
                )*
            })*
        }
    };
    ($($list:tt)*) => {
        e2e!(@backend sqlite, questline_testkit::Backend::Sqlite, $($list)*);
        e2e!(@backend postgres, questline_testkit::Backend::Postgres, $($list)*);
    };
}

e2e! {
    auth: [
        no_key_is_401_with_a_bearer_challenge,
        wrong_or_malformed_keys_are_401,
        the_configured_admin_key_works_and_nothing_is_printed,
        roles_are_enforced_with_403,
        without_a_configured_key_one_is_generated_printed_once_and_kept,
        user_tokens_are_refused_when_not_configured,
        user_tokens_must_be_valid_hs256,
        user_tokens_not_valid_yet_are_401,
        a_refused_large_body_does_not_break_the_next_request,
    ],
    durability: [kill_9_loses_nothing_acknowledged],
    jobs: [
        settlement_jobs_are_listed_succeeded_and_paged,
        jobs_filter_by_state_and_kind_and_retry_and_cancel_follow_their_state,
        bad_job_queries_are_422_and_unknown_jobs_404,
        an_api_process_settles_nothing_and_a_worker_beside_it_settles,
    ],
    events: [
        one_bad_event_never_sinks_its_batch,
        batch_shape_is_checked,
        an_event_counts_once_however_often_it_arrives,
        reversals_take_back_exactly_what_they_reverse,
        ten_tenths_reach_one,
        absurd_amounts_neither_fail_the_batch_nor_stop_ingest,
        a_stray_reversal_by_another_user_hides_nothing,
        text_a_backend_cannot_store_is_rejected_per_event,
        reversals_that_can_never_apply_are_refused_with_the_reason,
        nul_in_paths_and_names_is_answered_not_failed,
        numbers_no_exact_decimal_holds_are_rejected_per_event,
        a_string_is_never_a_number,
        event_times_follow_the_timestamp_rule,
    ],
    keys: [
        create_use_delete_and_the_key_stops_working_at_once,
        the_list_never_shows_a_secret_or_hash_and_records_last_use,
        the_last_admin_key_cannot_be_deleted,
        invalid_key_requests_are_422_with_pointers,
        malformed_json_is_400_with_a_position,
        a_body_that_is_not_json_is_415,
    ],
    messages: [
        bad_messages_are_422_with_pointers_and_roles_are_enforced,
        the_same_id_answers_the_first_message_and_another_body_is_409,
        a_batch_is_queued_all_or_none_with_a_pointer_per_message,
        a_5xx_is_retried_a_429_slows_down_and_a_400_fails,
        the_cheapest_route_that_meets_the_deadline_without_exceeding_a_limit,
        a_message_no_provider_can_send_in_time_expires_with_the_reason,
        a_slot_seconds_ahead_is_booked_as_sending_then_sent_in_it,
    ],
    messages_smtp: [
        an_email_arrives_with_its_headers_and_rendered_body_and_is_sent_once,
        a_550_fails_the_message_at_once_with_the_reason,
        a_451_is_retried_and_sent_once_the_server_accepts,
        without_the_allowance_a_provider_on_loopback_fails_the_start,
    ],
    mission_notices: [
        milestones_completions_and_rewards_reach_the_user_once_as_they_chose,
        quiet_hours_hold_a_notice_until_they_end,
        a_window_about_to_lapse_warns_the_user_who_has_not_finished,
        contacts_and_notifications_are_validated_and_users_keep_their_own,
    ],
    missions: [
        lifecycle_create_get_list_patch_end_delete,
        list_filters_by_status_and_paginates,
        validation_names_every_pointer,
        simulate_runs_the_engine_and_writes_nothing,
        simulate_takes_1_to_1000_events_like_ingest,
        patching_budget_repeat_and_status_edge_cases,
        numbers_in_a_mission_are_exact_json_numbers,
        mission_times_follow_the_timestamp_rule,
        cashback_without_a_cap_is_refused,
    ],
    ops: [
        healthz_and_readyz_answer_ok_without_a_key,
        openapi_document_describes_the_routes,
        openapi_documents_every_error_an_operation_answers,
        openapi_mission_request_schema_is_satisfiable,
        metrics_count_requests_in_prometheus_text,
        unknown_paths_are_404_and_wrong_methods_405_problems,
        request_bodies_over_one_mebibyte_are_413,
        event_batches_may_be_larger_than_one_mebibyte,
        huge_paths_and_headers_are_problems_too,
        sigterm_stops_the_server_promptly_with_status_0,
        sigterm_lets_an_in_flight_request_finish,
        data_survives_a_crash_and_restart,
    ],
    progress: [
        statuses_not_started_in_progress_completed_expired,
        a_budget_is_never_overspent_and_ends_the_mission,
        users_read_their_own_progress_with_a_jwt,
        events_count_only_if_received_while_the_mission_was_active,
        a_refund_after_the_budget_ended_the_mission_still_revokes,
        an_edit_after_the_budget_ended_the_mission_does_not_reopen_it,
        progress_and_reward_lists_are_paginated,
    ],
    problems: [every_rejection_has_its_problem_type],
    properties: [progress_equals_the_net_events_in_any_arrival_order],
    wallet: [
        balance_entries_are_exact_idempotent_and_never_overdraw,
        the_running_server_settles_points_and_badges_after_their_hold,
        what_is_left_of_expired_points_is_taken_back,
    ],
    webhooks: [
        the_registry_validates_and_shows_the_secret_once,
        private_targets_are_refused_unless_allowed,
        a_cash_reward_is_granted_after_two_failed_attempts,
        a_final_4xx_fails_the_reward_at_once,
        retry_after_is_honoured,
        the_last_failed_attempt_fails_the_reward_with_its_reason,
    ],
    crash: [a_job_whose_worker_is_killed_runs_again_after_its_lease_and_finishes_once],
    notifications: [
        completions_grants_and_revocations_are_notified_once_each,
        a_failed_fulfilment_is_notified,
        a_notification_that_keeps_failing_ends_dead_with_its_errors,
        with_redis_notifications_ride_the_fast_lane,
    ],
}
