//! Identifiers that cannot be mixed up: a function that takes a tenant, a mission and a user
//! says which is which in its signature, and the compiler holds every caller to it.
//!
//! These wrap the text as received. What a valid id looks like is decided where input enters
//! (`Event::parse`, mission compilation), not here: a stored id from before a rule tightened
//! must still be readable.

use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // Lets maps keyed by the id be probed with a `&str`.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

/// Whether every backend can store `text` as it is: PostgreSQL's text cannot hold U+0000
/// (SQLite's can). Text that fails this is refused where it enters (an event's fields, a
/// key's name), so no stored id contains one, and a lookup by such an id names nothing.
pub fn storable(text: &str) -> bool {
    !text.contains('\0')
}

id_type! {
    /// The app a row belongs to. Every stored row carries one.
    TenantId
}

id_type! {
    /// A mission, unique within its tenant.
    MissionId
}

id_type! {
    /// A user of a tenant's app, as the app names them.
    UserId
}

id_type! {
    /// An event's idempotency key, unique within its tenant.
    EventId
}

impl TenantId {
    /// The tenant every key and row belongs to until apps are first-class.
    pub fn default_tenant() -> Self {
        Self::new(crate::DEFAULT_TENANT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn ids_serialize_as_plain_strings_and_probe_maps_by_str() {
        let user = UserId::new("u-42");
        assert_eq!(serde_json::to_string(&user).unwrap(), "\"u-42\"");
        assert_eq!(serde_json::from_str::<UserId>("\"u-42\"").unwrap(), user);
        let map: HashMap<UserId, u32> = [(user.clone(), 1)].into();
        assert_eq!(map.get("u-42"), Some(&1));
        assert_eq!(user, "u-42");
    }
}
