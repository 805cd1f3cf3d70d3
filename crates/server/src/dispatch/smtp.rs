//! E-mail through SMTP (`lettre`): one plain-text message per send, with the message id as
//! its `Message-ID`, so that a retry after a lost answer can be recognised downstream. A
//! permanent SMTP failure (5xx) cannot be helped by a retry; a transient one (4xx) or a lost
//! connection may.

use super::Answer;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use questline_core::message::Message;
use std::time::Duration;

/// Where an `smtp` provider connects: `smtp://host:port` (no TLS is built in; use a local
/// relay for the last hop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpTarget {
    pub host: String,
    pub port: u16,
}

impl SmtpTarget {
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|_| "expected smtp://host:port".to_owned())?;
        if url.scheme() != "smtp" {
            return Err("expected smtp://host:port (TLS is not built in)".to_owned());
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("expected smtp://host:port")?;
        Ok(Self { host: host.trim_matches(['[', ']']).to_owned(), port: url.port().unwrap_or(25) })
    }
}

pub struct SmtpProvider {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpProvider {
    pub fn new(target: &SmtpTarget, from: &str, timeout: Duration) -> Result<Self, String> {
        let from: Mailbox = from.parse().map_err(|e| format!("from: {e}"))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&target.host)
            .port(target.port)
            .timeout(Some(timeout))
            .build();
        Ok(Self { transport, from })
    }

    pub async fn send(&self, message: &Message) -> Answer {
        let to: Mailbox = match message.to.parse() {
            Ok(to) => to,
            Err(e) => return Answer::Rejected { status: None, detail: format!("the address: {e}") },
        };
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject.clone().unwrap_or_default())
            .message_id(Some(format!("<{}@questline>", message.id.replace(['<', '>', ' '], "_"))))
            .header(ContentType::TEXT_PLAIN)
            .body(message.body.clone());
        let email = match email {
            Ok(email) => email,
            Err(e) => return Answer::Rejected { status: None, detail: format!("cannot build the e-mail: {e}") },
        };
        match self.transport.send(email).await {
            Ok(response) => Answer::Sent { reference: response.message().next().map(str::to_owned) },
            Err(e) => {
                let status = e.status().and_then(|code| code.to_string().parse::<u16>().ok());
                let detail = format!("the SMTP server: {e}");
                if e.is_permanent() { Answer::Rejected { status, detail } } else { Answer::Failed { status, detail } }
            }
        }
    }
}
