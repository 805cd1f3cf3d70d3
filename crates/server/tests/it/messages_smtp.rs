//! The `smtp` provider end to end, against a real SMTP server: a private aiosmtpd sink per
//! test (`questline_testkit::smtp`), which records what it receives and refuses the
//! recipients it is told to. An e-mail arrives with its envelope, headers and rendered body
//! and is `sent`; a 550 fails it with the reason; a 451 is retried until the sink accepts;
//! nothing is sent twice; and without `QUESTLINE_ALLOW_PRIVATE_TARGETS` a provider on
//! 127.0.0.1 fails the start, sending nothing.
//!
//! `QUESTLINE_SKIP_SMTP=1` skips these tests loudly; without it and without aiosmtpd they fail.

use crate::fixtures::*;
use crate::start_with;
use questline_testkit::smtp::{Refuse, SmtpSink};
use questline_testkit::{Backend, DEADLINE, ServerOptions, TestServer};
use serde_json::{Value, json};

const FROM: &str = "noreply@questline.test";

/// A configuration file whose one provider, `mail`, sends e-mail through `smtp_url`.
fn config(smtp_url: &str) -> String {
    format!(
        "[[templates]]\nname = \"welcome\"\nbody = \"Hello {{{{ name }}}}, your code is {{{{ code }}}}.\"\n\
         subject = \"Welcome, {{{{ name }}}}\"\n\n\
         [[providers]]\nname = \"mail\"\nchannels = [\"email\"]\nkind = \"smtp\"\nurl = \"{smtp_url}\"\n\
         from = \"{FROM}\"\nlimits = [{{ requests = 100, per = \"PT1S\" }}]\n\
         price = {{ per_message = 0.02, currency = \"INR\" }}\ntimeout = \"PT5S\"\n"
    )
}

/// A server whose provider `mail` sends through `sink`, allowed to reach 127.0.0.1.
async fn server_with(backend: Backend, sink: &SmtpSink) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("questline.toml");
    std::fs::write(&file, config(&sink.url())).unwrap();
    let server =
        start_with(ServerOptions::on(backend).env("QUESTLINE_ALLOW_PRIVATE_TARGETS", "true").config_file(&file)).await;
    (server, dir)
}

fn email(id: &str, to: &str) -> Value {
    json!({"id": id, "channel": "email", "to": to, "template": "welcome",
           "data": {"name": "Ada", "code": "4321"}, "user_id": "u-1"})
}

/// The message once its status is final.
async fn final_message(server: &TestServer, id: &str) -> Value {
    body_when(server, &format!("/v1/messages/{id}"), |m| {
        matches!(m["status"].as_str(), Some("sent" | "failed" | "expired"))
    })
    .await
}

fn outcomes(message: &Value) -> Vec<&str> {
    message["attempts"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap()).collect()
}

pub async fn an_email_arrives_with_its_headers_and_rendered_body_and_is_sent_once(backend: Backend) {
    if questline_testkit::smtp::skipped("messages_smtp::an_email_arrives_with_its_headers_and_rendered_body") {
        return;
    }
    let sink = SmtpSink::start().await;
    let (server, _dir) = server_with(backend, &sink).await;
    ok(server.post("/v1/messages", &email("welcome-1", "ada@example.test"))).await;
    let sent = final_message(&server, "welcome-1").await;
    assert_eq!(sent["status"], "sent", "{sent}\n{}", server.logs());
    assert_eq!(sent["provider"], "mail");
    assert_eq!(outcomes(&sent), ["sent"], "{sent}");
    // The sink's answer to DATA is the attempt's reference.
    assert!(sent["attempts"][0]["detail"].as_str().unwrap().contains("queued as sink-1"), "{sent}");

    let received = sink.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let mail = &received[0];
    assert_eq!(mail.mail_from, FROM);
    assert_eq!(mail.rcpt_tos, ["ada@example.test"]);
    assert_eq!(mail.header("From").as_deref(), Some(FROM), "{mail:?}");
    assert_eq!(mail.header("To").as_deref(), Some("ada@example.test"), "{mail:?}");
    assert_eq!(mail.header("Subject").as_deref(), Some("Welcome, Ada"), "{mail:?}");
    assert_eq!(mail.header("Message-ID").as_deref(), Some("<welcome-1@questline>"), "{mail:?}");
    assert!(mail.header("Content-Type").is_some_and(|t| t.starts_with("text/plain")), "{mail:?}");
    assert_eq!(mail.header("Content-Transfer-Encoding").as_deref(), Some("7bit"), "the body is as written: {mail:?}");
    assert_eq!(mail.body().trim_end(), "Hello Ada, your code is 4321.", "{mail:?}");

    // The same message again is the same message: answered, not sent again.
    let again = ok(server.post("/v1/messages", &email("welcome-1", "ada@example.test"))).await;
    assert_eq!(again["id"], "welcome-1");
    let providers = ok(server.get("/v1/providers")).await;
    assert_eq!(providers["items"][0]["sent"], 1, "{providers}");
    // A second one reuses the provider (and its pooled connection) and arrives as itself.
    ok(server.post("/v1/messages", &email("welcome-2", "grace@example.test"))).await;
    assert_eq!(final_message(&server, "welcome-2").await["status"], "sent");
    let ids: Vec<Option<String>> = sink.received().iter().map(|m| m.header("Message-ID")).collect();
    assert_eq!(ids, [Some("<welcome-1@questline>".to_owned()), Some("<welcome-2@questline>".to_owned())]);
    assert!(sink.refused().is_empty());
}

pub async fn a_550_fails_the_message_at_once_with_the_reason(backend: Backend) {
    if questline_testkit::smtp::skipped("messages_smtp::a_550_fails_the_message_at_once_with_the_reason") {
        return;
    }
    let sink = SmtpSink::start_refusing(&[Refuse::permanently("*@bounce.test")]).await;
    let (server, _dir) = server_with(backend, &sink).await;
    ok(server.post("/v1/messages", &email("bounced", "nobody@bounce.test"))).await;
    let failed = final_message(&server, "bounced").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(outcomes(&failed), ["rejected"], "a 550 is not retried: {failed}");
    assert_eq!(failed["attempts"][0]["provider"], "mail");
    assert_eq!(failed["attempts"][0]["status"], 550, "{failed}");
    let detail = failed["attempts"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("No such mailbox"), "the server's reason is kept: {detail}");
    assert!(failed["sent_at"].is_null(), "{failed}");

    // Another recipient of the same provider is not held back by the refusal.
    ok(server.post("/v1/messages", &email("fine", "ada@example.test"))).await;
    assert_eq!(final_message(&server, "fine").await["status"], "sent");
    let received = sink.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].rcpt_tos, ["ada@example.test"]);
    let refused = sink.refused();
    assert_eq!(refused.len(), 1, "asked once: {refused:?}");
    assert_eq!((refused[0].address.as_str(), refused[0].code), ("nobody@bounce.test", 550));
}

pub async fn a_451_is_retried_and_sent_once_the_server_accepts(backend: Backend) {
    if questline_testkit::smtp::skipped("messages_smtp::a_451_is_retried_and_sent_once_the_server_accepts") {
        return;
    }
    let sink = SmtpSink::start_refusing(&[Refuse::transiently("later@example.test", 1)]).await;
    let (server, _dir) = server_with(backend, &sink).await;
    ok(server.post("/v1/messages", &email("later-1", "later@example.test"))).await;
    let sent = final_message(&server, "later-1").await;
    assert_eq!(sent["status"], "sent", "{sent}");
    assert_eq!(outcomes(&sent), ["failed", "sent"], "{sent}");
    assert_eq!(sent["attempts"][0]["status"], 451, "{sent}");
    assert!(sent["attempts"][0]["detail"].as_str().unwrap().contains("Try again later"), "{sent}");
    // The retry waited for its backoff (2 s after the first failure).
    let at = |i: usize| sent["attempts"][i]["at"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    assert!(at(1).duration_since(at(0)) >= jiff::SignedDuration::from_millis(1900), "{sent}");

    let refused = sink.refused();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!((refused[0].address.as_str(), refused[0].code), ("later@example.test", 451));
    let received = sink.received();
    assert_eq!(received.len(), 1, "sent once: {received:?}");
    assert_eq!(received[0].header("Message-ID").as_deref(), Some("<later-1@questline>"));
    assert_eq!(received[0].body().trim_end(), "Hello Ada, your code is 4321.");
}

/// Without `QUESTLINE_ALLOW_PRIVATE_TARGETS`, an smtp provider at 127.0.0.1 is refused when
/// the server starts (as an HTTP provider's private URL is): the start fails, naming the
/// provider and the setting, and nothing reaches the SMTP server.
pub async fn without_the_allowance_a_provider_on_loopback_fails_the_start(backend: Backend) {
    if questline_testkit::smtp::skipped("messages_smtp::without_the_allowance_a_provider_on_loopback_fails_the_start") {
        return;
    }
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("questline.toml");
    std::fs::write(&file, config(&sink.url())).unwrap();
    let postgres = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(questline_testkit::postgres::fresh_database().await),
    };
    let database_url = match &postgres {
        Some(db) => db.url().to_owned(),
        None => format!("sqlite://{}", dir.path().join("q.db").display()),
    };
    let mut command = tokio::process::Command::new(crate::QUESTLINE);
    command.arg("serve").arg("--config").arg(&file).args(["--listen", "127.0.0.1:0", "--database-url", &database_url]);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("QUESTLINE_")) {
        command.env_remove(name);
    }
    command.env("QUESTLINE_ADMIN_KEY", questline_testkit::ADMIN_KEY).kill_on_drop(true);
    let out = tokio::time::timeout(DEADLINE, command.output())
        .await
        .expect("the start is refused, not served")
        .expect("run questline");
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}\n{err}");
    assert!(!stdout.contains("questline listening"), "{stdout}");
    assert!(err.contains("provider \"mail\"") && err.contains("127.0.0.1"), "names the provider and host: {err}");
    assert!(err.contains("QUESTLINE_ALLOW_PRIVATE_TARGETS=true allows it"), "says how to allow it: {err}");
    assert!(sink.received().is_empty() && sink.refused().is_empty(), "nothing was sent");
}
