//! How each user is reached and what they agreed to hear: contact points (phone, e-mail,
//! push token, time zone) and preferences (opt-outs, quiet hours), each replaced whole by a
//! `PUT`, both in one stored document per user.

use crate::parse::pointer_of;
use crate::{Result, Service, ServiceError};
use questline_core::contact::{Contact, ContactPoints, Preferences};
use questline_core::id::{TenantId, UserId};
use serde::de::DeserializeOwned;
use serde_json::Value;

impl Service {
    /// The user's contact and preferences; empty for a user who gave none.
    pub async fn contact(&self, tenant: &TenantId, user: &UserId) -> Result<Contact> {
        if !questline_core::id::storable(user.as_str()) {
            return Ok(Contact::empty(user.as_str()));
        }
        Ok(self.store.contact(tenant, user.as_str()).await?.unwrap_or_else(|| Contact::empty(user.as_str())))
    }

    /// Replaces the user's contact points (a field left out is removed).
    pub async fn put_contact_points(&self, tenant: &TenantId, user: &UserId, body: &Value) -> Result<Contact> {
        let points: ContactPoints = parse(body)?;
        points.check()?;
        self.change_contact(tenant, user, |c| c.points = points).await
    }

    /// Replaces the user's preferences (a field left out is the default: no opt-out, no
    /// quiet hours).
    pub async fn put_preferences(&self, tenant: &TenantId, user: &UserId, body: &Value) -> Result<Contact> {
        let preferences: Preferences = parse(body)?;
        preferences.check()?;
        self.change_contact(tenant, user, |c| c.preferences = preferences).await
    }

    async fn change_contact(
        &self,
        tenant: &TenantId,
        user: &UserId,
        change: impl FnOnce(&mut Contact),
    ) -> Result<Contact> {
        if !questline_core::id::storable(user.as_str()) {
            return Err(ServiceError::invalid("", "the user id contains U+0000, which cannot be stored"));
        }
        let now = self.clock.now();
        let mut unit = self.store.begin().await?;
        let mut contact =
            unit.lock_contact(tenant, user.as_str()).await?.unwrap_or_else(|| Contact::empty(user.as_str()));
        change(&mut contact);
        contact.updated_at = Some(now);
        unit.save_contact(tenant, &contact, now).await?;
        unit.commit().await?;
        Ok(contact)
    }
}

/// A request document as `T`, naming the pointer of the first structural problem.
fn parse<T: DeserializeOwned>(body: &Value) -> Result<T> {
    if !body.is_object() {
        return Err(ServiceError::invalid("", "must be a JSON object"));
    }
    serde_path_to_error::deserialize(body)
        .map_err(|e| ServiceError::invalid(pointer_of(e.path()), e.inner().to_string()))
}
