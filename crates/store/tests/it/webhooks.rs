//! Webhook endpoints: stored as given, per tenant, at most one fulfilment endpoint each.

use crate::{T, TestDb, at, tenant};
use questline_core::id::TenantId;
use questline_store::{Store, StoreError, Webhook};
use std::time::Duration;

fn hook(id: &str, events: &[&str], secs: i64) -> Webhook {
    Webhook {
        id: id.into(),
        url: format!("https://example.com/hooks/{id}"),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        max_attempts: 8,
        retry_initial: Duration::from_millis(10_500),
        retry_max: Duration::from_secs(3600),
        sealed_secret: format!("sealed-{id}"),
        created_at: at(secs),
    }
}

async fn insert(store: &dyn Store, tenant: &TenantId, webhook: &Webhook) -> Result<(), StoreError> {
    let mut unit = store.begin().await?;
    unit.insert_webhook(tenant, webhook).await?;
    unit.commit().await
}

pub async fn webhooks_lifecycle_and_one_fulfilment_endpoint(db: &TestDb) {
    let store = db.open().await;
    let fulfil = hook("wh_1", &["reward.fulfil", "mission.completed"], 1);
    insert(&*store, &T, &fulfil).await.unwrap();
    insert(&*store, &T, &hook("wh_0", &["reward.granted"], 2)).await.unwrap();
    // Another tenant has its own fulfilment endpoint.
    insert(&*store, &tenant("acme"), &hook("wh_9", &["reward.fulfil"], 3)).await.unwrap();

    // A second fulfilment endpoint, or a taken id, is a conflict; the unit stays usable.
    let mut unit = store.begin().await.unwrap();
    let err = unit.insert_webhook(&T, &hook("wh_2", &["reward.fulfil"], 4)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = unit.insert_webhook(&T, &hook("wh_1", &["reward.revoked"], 4)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    unit.insert_webhook(&T, &hook("wh_3", &["reward.failed"], 5)).await.unwrap();
    let locked = unit.lock_webhooks(&T, at(6)).await.unwrap();
    assert_eq!(locked.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), ["wh_1", "wh_0", "wh_3"], "sees its own");
    unit.commit().await.unwrap();

    let listed = store.list_webhooks(&T).await.unwrap();
    assert_eq!(listed.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), ["wh_1", "wh_0", "wh_3"], "oldest first");
    assert_eq!(listed[0], fulfil, "every field round-trips, the millisecond included");
    assert_eq!(store.fulfilment_webhook(&T).await.unwrap(), Some(fulfil.clone()));
    assert_eq!(store.fulfilment_webhook(&tenant("acme")).await.unwrap().map(|w| w.id), Some("wh_9".into()));
    assert_eq!(store.fulfilment_webhook(&tenant("nobody")).await.unwrap(), None);
    let mut unit = store.begin().await.unwrap();
    assert!(unit.lock_webhooks(&tenant("new"), at(7)).await.unwrap().is_empty(), "a new tenant has none");
    drop(unit);

    // Deleting is per tenant; once the fulfilment endpoint is gone another may take its place.
    let mut unit = store.begin().await.unwrap();
    assert!(!unit.delete_webhook(&tenant("acme"), "wh_1").await.unwrap());
    assert!(unit.delete_webhook(&T, "wh_1").await.unwrap());
    assert!(!unit.delete_webhook(&T, "wh_1").await.unwrap());
    unit.insert_webhook(&T, &hook("wh_4", &["reward.fulfil"], 8)).await.unwrap();
    unit.commit().await.unwrap();
    assert_eq!(store.fulfilment_webhook(&T).await.unwrap().map(|w| w.id), Some("wh_4".into()));
    assert_eq!(store.list_webhooks(&T).await.unwrap().len(), 3);
}
