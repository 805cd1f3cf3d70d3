//! Users' contact points and preferences: one document per user and tenant, written under
//! its row lock, read back as written; a rolled-back unit leaves nothing.

use crate::{T, TestDb, at, tenant};
use questline_core::contact::{Contact, ContactPoints};

pub async fn contacts_round_trip_per_tenant(db: &TestDb) {
    let store = db.open().await;
    assert_eq!(store.contact(&T, "u-1").await.unwrap(), None);

    let mut contact = Contact::empty("u-1");
    contact.points = ContactPoints { phone: Some("+919876543210".into()), ..ContactPoints::default() };
    contact.preferences.opt_out.missions.insert("m-1".into());
    contact.updated_at = Some(at(1));
    let mut unit = store.begin().await.unwrap();
    assert_eq!(unit.lock_contact(&T, "u-1").await.unwrap(), None);
    unit.save_contact(&T, &contact, at(1)).await.unwrap();
    unit.commit().await.unwrap();
    assert_eq!(store.contact(&T, "u-1").await.unwrap().as_ref(), Some(&contact));
    assert_eq!(store.contact(&tenant("acme"), "u-1").await.unwrap(), None, "another tenant's user");

    // Changed under the lock; a unit dropped without commit changes nothing.
    let mut unit = store.begin().await.unwrap();
    let mut locked = unit.lock_contact(&T, "u-1").await.unwrap().unwrap();
    locked.points.email = Some("a@example.com".into());
    unit.save_contact(&T, &locked, at(2)).await.unwrap();
    drop(unit);
    assert_eq!(store.contact(&T, "u-1").await.unwrap().as_ref(), Some(&contact));
    let mut unit = store.begin().await.unwrap();
    unit.save_contact(&T, &locked, at(2)).await.unwrap();
    unit.commit().await.unwrap();
    assert_eq!(store.contact(&T, "u-1").await.unwrap().unwrap().points.email.as_deref(), Some("a@example.com"));
}
