//! API keys.

use crate::{T, TestDb, at, tenant};
use questline_core::id::TenantId;
use questline_store::{ApiKey, NewApiKey, Role, Store, StoreError};

async fn insert_key(store: &dyn Store, tenant: &TenantId, key: &NewApiKey) -> Result<ApiKey, StoreError> {
    let mut unit = store.begin().await?;
    let key = unit.insert_key(tenant, key).await?;
    unit.commit().await?;
    Ok(key)
}

async fn delete_key(store: &dyn Store, tenant: &TenantId, id: &str) -> bool {
    let mut unit = store.begin().await.unwrap();
    let deleted = unit.delete_key(tenant, id).await.unwrap();
    unit.commit().await.unwrap();
    deleted
}

fn new_key(id: &str, role: Role, secs: i64) -> NewApiKey {
    NewApiKey {
        id: id.into(),
        name: format!("key {id}"),
        role,
        secret_hash: format!("hash-{id}"),
        created_at: at(secs),
    }
}

pub async fn keys_lifecycle(db: &TestDb) {
    let store = db.open().await;
    let admin = insert_key(&*store, &T, &new_key("k1", Role::Admin, 1)).await.unwrap();
    assert_eq!(
        admin,
        ApiKey { id: "k1".into(), name: "key k1".into(), role: Role::Admin, created_at: at(1), last_used_at: None }
    );
    insert_key(&*store, &T, &new_key("k2", Role::Ingest, 2)).await.unwrap();
    insert_key(&*store, &T, &new_key("k0", Role::Ingest, 3)).await.unwrap();
    insert_key(&*store, &tenant("acme"), &new_key("k9", Role::Admin, 4)).await.unwrap();
    let err = insert_key(&*store, &T, &new_key("k1", Role::Read, 5)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    assert_eq!(
        store.key_by_hash("hash-k9").await.unwrap().map(|(t, k)| (t, k.id)),
        Some((tenant("acme"), "k9".into()))
    );
    assert_eq!(store.key_by_hash("hash-nope").await.unwrap(), None);
    let listed: Vec<String> = store.list_keys(&T).await.unwrap().into_iter().map(|k| k.id).collect();
    assert_eq!(listed, ["k1", "k2", "k0"], "oldest first");
    assert_eq!(store.count_keys(&T, Role::Ingest).await.unwrap(), 2);
    assert_eq!(store.count_keys(&T, Role::Admin).await.unwrap(), 1);
    assert_eq!(store.count_keys(&T, Role::Read).await.unwrap(), 0);

    store.touch_key(&T, "k2", at(50)).await.unwrap();
    let (owner, touched) = store.key_by_hash("hash-k2").await.unwrap().unwrap();
    assert_eq!((owner, touched.last_used_at), (T.clone(), Some(at(50))));

    assert!(!delete_key(&*store, &tenant("acme"), "k2").await, "keys are per tenant");
    assert!(delete_key(&*store, &T, "k2").await);
    assert!(!delete_key(&*store, &T, "k2").await);
    assert_eq!(store.count_keys(&T, Role::Ingest).await.unwrap(), 1);
    assert_eq!(store.key_by_hash("hash-k2").await.unwrap(), None);
}
