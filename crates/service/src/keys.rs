//! API keys: bootstrap, authentication and administration.
//!
//! A key is a random secret shown once (`ql_` + 43 base64url characters, 256 bits) and
//! stored only as its hex SHA-256. Every authentication looks the key up in the store, with
//! no cache, so a deleted key stops working at once. Only the `last_used_at` write is
//! rate-limited (once a minute per key), so that reads do not turn into writes.
//!
//! Architecture invariant: a server is never open. Without a configured admin key,
//! [`Service::bootstrap`] makes one and returns it to be shown once.

use crate::{Result, Service, ServiceError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::{SignedDuration, Timestamp};
use questline_core::id::TenantId;
use questline_store::{ApiKey, NewApiKey, Role, StoreError};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// The prefix of generated API key secrets; it makes a leaked key easy to recognise.
pub const KEY_PREFIX: &str = "ql_";

/// `last_used_at` is written at most this often per key.
const TOUCH_EVERY: SignedDuration = SignedDuration::from_secs(60);

/// An authenticated API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    pub key_id: String,
    pub role: Role,
}

/// A new key's stored form and its secret, which exists nowhere else.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub key: ApiKey,
    pub secret: String,
}

/// When each key's `last_used_at` was last written, by key id.
#[derive(Default)]
pub(crate) struct KeyUse(Mutex<HashMap<String, Timestamp>>);

impl Service {
    /// Makes sure the default tenant can be administered, once at start-up.
    ///
    /// With `admin_key`, a key with that secret exists afterwards (role admin, name
    /// "bootstrap"). Without it, if the tenant has no admin key, one is generated and its
    /// secret returned, to be shown once; otherwise nothing changes and `None` is returned.
    pub async fn bootstrap(&self, admin_key: Option<&str>) -> Result<Option<String>> {
        let now = self.clock.now();
        let tenant = TenantId::default_tenant();
        if let Some(secret) = admin_key {
            return match self.store.key_by_hash(&hash_secret(secret)).await? {
                Some((owner, key)) if owner == tenant && key.role == Role::Admin => Ok(None),
                Some(_) => Err(ServiceError::AdminKeyNotAdmin),
                None => match self.insert_key(&tenant, &new_key("bootstrap", Role::Admin, secret, now)).await {
                    // Another process starting at the same moment inserted it first.
                    Ok(_) | Err(ServiceError::Store(StoreError::Conflict(_))) => Ok(None),
                    Err(e) => Err(e),
                },
            };
        }
        if self.store.count_keys(&tenant, Role::Admin).await? > 0 {
            return Ok(None);
        }
        let secret = generate_secret();
        self.insert_key(&tenant, &new_key("bootstrap", Role::Admin, &secret, now)).await?;
        Ok(Some(secret))
    }

    /// Creates a key; its secret is in the answer and nowhere else.
    pub async fn create_key(&self, tenant: &TenantId, name: &str, role: Role) -> Result<CreatedKey> {
        let secret = generate_secret();
        let key = self.insert_key(tenant, &new_key(name, role, &secret, self.clock.now())).await?;
        tracing::info!(key_id = %key.id, role = key.role.as_str(), "API key created");
        Ok(CreatedKey { key, secret })
    }

    /// Every key of the tenant, oldest first (never a secret: the store has none).
    pub async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKey>> {
        Ok(self.store.list_keys(tenant).await?)
    }

    /// Deletes a key; the tenant's last admin key is refused, since that would lock
    /// everyone out.
    pub async fn delete_key(&self, tenant: &TenantId, id: &str) -> Result<()> {
        let keys = self.store.list_keys(tenant).await?;
        let Some(target) = keys.iter().find(|k| k.id == id) else {
            return Err(ServiceError::KeyNotFound(id.to_owned()));
        };
        if target.role == Role::Admin && keys.iter().filter(|k| k.role == Role::Admin).count() <= 1 {
            return Err(ServiceError::LastAdminKey);
        }
        let mut unit = self.store.begin().await?;
        if !unit.delete_key(tenant, id).await? {
            return Err(ServiceError::KeyNotFound(id.to_owned()));
        }
        unit.commit().await?;
        self.keys.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        tracing::info!(key_id = %id, "API key deleted");
        Ok(())
    }

    /// The key whose secret this is.
    pub async fn authenticate_key(&self, secret: &str) -> Result<Caller> {
        let Some((tenant, key)) = self.store.key_by_hash(&hash_secret(secret)).await? else {
            return Err(ServiceError::UnknownKey);
        };
        self.touch(&tenant, &key.id).await;
        Ok(Caller { tenant, key_id: key.id, role: key.role })
    }

    async fn insert_key(&self, tenant: &TenantId, key: &NewApiKey) -> Result<ApiKey> {
        let mut unit = self.store.begin().await?;
        let key = unit.insert_key(tenant, key).await?;
        unit.commit().await?;
        Ok(key)
    }

    async fn touch(&self, tenant: &TenantId, key_id: &str) {
        let now = self.clock.now();
        {
            let mut touched = self.keys.0.lock().unwrap_or_else(|e| e.into_inner());
            match touched.get(key_id) {
                Some(at) if now.duration_since(*at) < TOUCH_EVERY => return,
                _ => touched.insert(key_id.to_owned(), now),
            };
        }
        if let Err(e) = self.store.touch_key(tenant, key_id, now).await {
            tracing::warn!(key_id, error = %e, "could not record the key's last use");
        }
    }
}

pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn generate_key_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..16).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("key_{suffix}")
}

fn new_key(name: &str, role: Role, secret: &str, now: Timestamp) -> NewApiKey {
    NewApiKey { id: generate_key_id(), name: name.to_owned(), role, secret_hash: hash_secret(secret), created_at: now }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_the_documented_shape_and_differ() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert!(a.starts_with("ql_"));
        assert_eq!(a.len(), 3 + 43);
        assert!(a[3..].bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(hash_secret(&a).len(), 64);
        assert_eq!(hash_secret(&a), hash_secret(&a));
        assert!(generate_key_id().starts_with("key_"));
    }
}
