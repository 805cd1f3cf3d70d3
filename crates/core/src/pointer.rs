//! Validation errors that say where: each carries the JSON pointer (RFC 6901) of the value
//! at fault, so an API can answer `{"pointer": "/steps/0/filters/1/op", "detail": …}`.

use std::fmt;

/// One problem found in an input document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub pointer: String,
    pub detail: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { pointer: pointer.into(), detail: detail.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.pointer.is_empty() { "/" } else { &self.pointer };
        write!(f, "{at}: {}", self.detail)
    }
}

/// Every problem found, never just the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} validation error(s), first: {}", .0.len(), .0[0])]
pub struct ValidationErrors(pub Vec<FieldError>);

/// Escapes one reference token (`~` → `~0`, `/` → `~1`).
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}
