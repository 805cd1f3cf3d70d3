//! The answers hyper gives on its own, as problem+json too.
//!
//! A request hyper cannot parse never reaches the router, so the `problem_details` layer
//! never sees its answer: hyper writes a bare `400`, `414` (a request target over 64 KiB) or
//! `431` (over 100 headers, or a head over hyper's buffer of about 400 KiB) with an empty
//! body, and closes the connection. It offers no hook to shape that answer, so the
//! connection's writes are watched instead: [`ProblemListener`] wraps each accepted stream
//! in a [`ProblemIo`], which replaces exactly such a head (one of those statuses, no
//! `content-type`, `content-length: 0`; every answer of the router has a problem+json body)
//! with the same status and a problem+json body. Everything else passes through untouched.
//! (A head that hyper takes in whole but is over [`super::MAX_HEAD_BYTES`] is the router's
//! own 431.)

use crate::error::{ApiError, ProblemType, problem};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener whose connections answer hyper's own errors with problem+json.
pub struct ProblemListener(pub TcpListener);

impl axum::serve::Listener for ProblemListener {
    type Io = ProblemIo<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (ProblemIo::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection whose bare parse-error answers are rewritten (see the module's doc).
pub struct ProblemIo<T> {
    inner: T,
    /// A replacement answer and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T> ProblemIo<T> {
    pub fn new(inner: T) -> Self {
        Self { inner, pending: None }
    }
}

impl<T: AsyncWrite + Unpin> ProblemIo<T> {
    /// Writes what is left of a replacement answer.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `head` in place of the inner stream when it is a bare parse-error answer.
    fn replaced(&mut self, cx: &mut Context<'_>, head: &[u8]) -> Option<Poll<io::Result<usize>>> {
        let replacement = problem_for_bare_error(head)?;
        self.pending = Some((replacement, 0));
        // Written now if the socket takes it; otherwise by the flush or shutdown that follows.
        Some(match self.drain(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(head.len())),
        })
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ProblemIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ProblemIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some(done) = self.replaced(cx, buf) {
            return done;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total <= MAX_BARE_HEAD && bufs.iter().find(|b| !b.is_empty()).is_some_and(|b| b.starts_with(b"HTTP/1.")) {
            let head: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            if let Some(done) = self.replaced(cx, &head) {
                return done;
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// hyper's bare answers are a status line and two or three short headers.
const MAX_BARE_HEAD: usize = 512;

/// The problem+json answer in place of `head`, if `head` is one of hyper's bare parse-error
/// answers: a whole response head, nothing after it, with no content type and an empty body.
fn problem_for_bare_error(head: &[u8]) -> Option<Vec<u8>> {
    if head.len() > MAX_BARE_HEAD || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text[..text.len() - 4].split("\r\n");
    let status_line = lines.next()?;
    let version = status_line.strip_prefix("HTTP/1.").filter(|rest| rest.starts_with(['0', '1']))?;
    let code: u16 = version.get(2..5)?.parse().ok()?;
    let (kind, detail) = match code {
        400 => {
            (problem::MALFORMED_REQUEST, "the request is not valid HTTP: its request line or a header cannot be parsed")
        }
        414 => (problem::URI_TOO_LONG, "the request target (path and query) is longer than 64 KiB"),
        431 => (
            problem::HEADERS_TOO_LARGE,
            "the request's headers are too large: over 100 headers, or more than hyper's buffer (about 400 KiB) before they end",
        ),
        _ => return None,
    };
    let mut date = None;
    let mut empty = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => empty = value == "0",
            "date" => date = Some(value),
            "connection" | "transfer-encoding" => {}
            // A content type (or anything else) means the router answered: not ours to touch.
            _ => return None,
        }
    }
    if !empty {
        return None;
    }
    Some(answer(kind, detail, date))
}

fn answer(kind: ProblemType, detail: &str, date: Option<&str>) -> Vec<u8> {
    let ApiError::Problem(problem) = ApiError::new(kind, detail) else { unreachable!("ApiError::new makes a problem") };
    let body = serde_json::to_vec(&*problem).expect("a problem serializes");
    let status = kind.status;
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    if let Some(date) = date {
        out.push_str(&format!("date: {date}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn parsed(bytes: &[u8]) -> (String, serde_json::Value) {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.to_owned(), serde_json::from_str(body).unwrap())
    }

    #[test]
    fn bare_parse_error_answers_become_problems() {
        for (code, slug) in [(400, "malformed-request"), (414, "uri-too-long"), (431, "headers-too-large")] {
            let reason = StatusCode::from_u16(code).unwrap().canonical_reason().unwrap();
            let bare =
                format!("HTTP/1.1 {code} {reason}\r\ncontent-length: 0\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n");
            let (head, body) = parsed(&problem_for_bare_error(bare.as_bytes()).expect("replaced"));
            assert!(head.starts_with(&format!("HTTP/1.1 {code} ")), "{head}");
            assert!(head.contains("content-type: application/problem+json"), "{head}");
            assert!(head.contains("date: Mon, 01 Jan 2024 00:00:00 GMT"), "{head}");
            assert_eq!(body["type"], format!("https://questline.dev/problems/{slug}"));
            assert_eq!(body["status"], code);
        }
    }

    #[test]
    fn every_other_write_passes_through() {
        let untouched: [&[u8]; 6] = [
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 414 URI Too Long\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{\"a\": 1}",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"{\"type\": \"HTTP/1.1 400 Bad Request\r\n\r\n\"}",
        ];
        for bytes in untouched {
            assert_eq!(problem_for_bare_error(bytes), None, "{}", String::from_utf8_lossy(bytes));
        }
    }
}
