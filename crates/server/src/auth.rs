//! Placeholder (helper B fills this in).
pub struct Authenticator;
