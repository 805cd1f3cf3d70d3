//! E-mail through SMTP (`lettre`): one plain-text message per send, with the message id as
//! its `Message-ID`, so that a retry after a lost answer can be recognised downstream. A
//! permanent SMTP failure (5xx) cannot be helped by a retry; a transient one (4xx) or a lost
//! connection may.
//!
//! Outbound safety, as for webhooks and HTTP providers: unless private targets are allowed
//! (`QUESTLINE_ALLOW_PRIVATE_TARGETS`), a host that is a private address or `localhost` fails
//! the start ([`SmtpTarget::check`]), and before each send the host is resolved here and
//! refused if any of its addresses is private ([`resolve`]); lettre is then given the
//! address itself, so what was checked is what is connected to.

use super::Answer;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use questline_core::message::Message;
use questline_service::webhooks::is_forbidden_ip;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
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

    /// The webhooks' rule, before any connection: unless `allow_private`, the host must not
    /// be a loopback, private, link-local or unspecified address, nor `localhost`. A name is
    /// checked again at each send, on the addresses it resolves to ([`resolve`]).
    pub fn check(&self, allow_private: bool) -> Result<(), String> {
        if allow_private {
            return Ok(());
        }
        let private = match self.host.parse::<IpAddr>() {
            Ok(ip) => is_forbidden_ip(ip),
            Err(_) => {
                let name = self.host.trim_end_matches('.').to_ascii_lowercase();
                name == "localhost" || name.ends_with(".localhost")
            }
        };
        if private {
            return Err(format!(
                "the URL must not point at a loopback, private, link-local or unspecified address ({} is one; \
                 QUESTLINE_ALLOW_PRIVATE_TARGETS=true allows it)",
                self.host
            ));
        }
        Ok(())
    }
}

/// The addresses of `target`, resolved now; unless `allow_private`, refused (a retry cannot
/// help) if any of them is private, as webhooks' `GuardedResolver` does. The address
/// connected to is one of these, so DNS cannot point the checked name elsewhere in between.
pub async fn resolve(target: &SmtpTarget, allow_private: bool, timeout: Duration) -> Result<Vec<SocketAddr>, Answer> {
    let host = target.host.as_str();
    let looked_up = tokio::time::timeout(timeout, tokio::net::lookup_host((host, target.port))).await;
    let addrs: Vec<SocketAddr> = match looked_up {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(e)) => return Err(Answer::Failed { status: None, detail: format!("cannot resolve {host}: {e}") }),
        Err(_) => {
            let detail = format!("cannot resolve {host} within {} ms", timeout.as_millis());
            return Err(Answer::Failed { status: None, detail });
        }
    };
    if addrs.is_empty() {
        return Err(Answer::Failed { status: None, detail: format!("{host} resolves to no address") });
    }
    if !allow_private && let Some(bad) = addrs.iter().find(|a| is_forbidden_ip(a.ip())) {
        let detail = format!(
            "{host} resolves to {}, a private or special address (QUESTLINE_ALLOW_PRIVATE_TARGETS=true allows it)",
            bad.ip()
        );
        return Err(Answer::Rejected { status: None, detail });
    }
    Ok(addrs)
}

type Transport = AsyncSmtpTransport<Tokio1Executor>;

pub struct SmtpProvider {
    target: SmtpTarget,
    from: Mailbox,
    timeout: Duration,
    allow_private: bool,
    /// The transport to the address the host resolved to last, kept with its pooled
    /// connections for as long as the host still resolves there.
    transport: Mutex<Option<(SocketAddr, Transport)>>,
}

impl SmtpProvider {
    /// Refuses, unless `allow_private`, a host that is a private address or `localhost`
    /// ([`SmtpTarget::check`]).
    pub fn new(target: &SmtpTarget, from: &str, timeout: Duration, allow_private: bool) -> Result<Self, String> {
        let from: Mailbox = from.parse().map_err(|e| format!("from: {e}"))?;
        target.check(allow_private)?;
        Ok(Self { target: target.clone(), from, timeout, allow_private, transport: Mutex::new(None) })
    }

    /// A transport to an address `target` resolves to now (checked: [`resolve`]).
    async fn transport(&self) -> Result<Transport, Answer> {
        let addrs = resolve(&self.target, self.allow_private, self.timeout).await?;
        let mut kept = self.transport.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((addr, transport)) = kept.as_ref()
            && addrs.contains(addr)
        {
            return Ok(transport.clone());
        }
        // Connected by address, not by name: lettre resolves nothing itself then. Only the
        // first address is tried (a connection failure is retried on the next send).
        let addr = addrs[0];
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
            .port(addr.port())
            .timeout(Some(self.timeout))
            .build();
        *kept = Some((addr, transport.clone()));
        Ok(transport)
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
        let transport = match self.transport().await {
            Ok(transport) => transport,
            Err(answer) => return answer,
        };
        match transport.send(email).await {
            Ok(response) => Answer::Sent { reference: response.message().next().map(str::to_owned) },
            Err(e) => {
                let status = e.status().and_then(|code| code.to_string().parse::<u16>().ok());
                let detail = format!("the SMTP server: {e}");
                if e.is_permanent() { Answer::Rejected { status, detail } } else { Answer::Failed { status, detail } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str) -> SmtpTarget {
        SmtpTarget { host: host.to_owned(), port: 25 }
    }

    #[test]
    fn private_hosts_are_refused_at_start_unless_allowed() {
        for host in
            ["127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.1.1", "0.0.0.0", "::1", "localhost", "mx.localhost."]
        {
            let why = target(host).check(false).unwrap_err();
            assert!(why.contains("QUESTLINE_ALLOW_PRIVATE_TARGETS"), "{host}: {why}");
            target(host).check(true).unwrap();
        }
        for host in ["smtp.example.com", "93.184.216.34", "2606:2800:220:1::1"] {
            target(host).check(false).unwrap();
        }
        let parsed = SmtpTarget::parse("smtp://[::1]:2525").unwrap();
        assert_eq!(parsed, SmtpTarget { host: "::1".to_owned(), port: 2525 });
        assert!(parsed.check(false).is_err());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_a_private_address_is_refused_at_send() {
        // `localhost` gets past no start (above); here it stands for any name whose DNS
        // answer is private: the check is on the addresses, after resolution.
        let timeout = Duration::from_secs(5);
        let refused = resolve(&target("localhost"), false, timeout).await.unwrap_err();
        let Answer::Rejected { status: None, detail } = refused else { panic!("{refused:?}") };
        assert!(detail.contains("localhost resolves to") && detail.contains("private"), "{detail}");
        let allowed = resolve(&target("localhost"), true, timeout).await.unwrap();
        assert!(allowed.iter().all(|a| a.ip().is_loopback() && a.port() == 25), "{allowed:?}");
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_may_be_retried() {
        let failed = resolve(&target("no-such-host.invalid"), false, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(failed, Answer::Failed { status: None, .. }), "{failed:?}");
    }
}
