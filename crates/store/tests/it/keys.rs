//! API keys.

use crate::{T, TestDb, at};
use questline_store::{ApiKey, NewApiKey, Role, StoreError};

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
    let admin = store.insert_key(T, &new_key("k1", Role::Admin, 1)).await.unwrap();
    assert_eq!(
        admin,
        ApiKey { id: "k1".into(), name: "key k1".into(), role: Role::Admin, created_at: at(1), last_used_at: None }
    );
    store.insert_key(T, &new_key("k2", Role::Ingest, 2)).await.unwrap();
    store.insert_key(T, &new_key("k0", Role::Ingest, 3)).await.unwrap();
    store.insert_key("acme", &new_key("k9", Role::Admin, 4)).await.unwrap();
    let err = store.insert_key(T, &new_key("k1", Role::Read, 5)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    assert_eq!(store.key_by_hash("hash-k9").await.unwrap().map(|(t, k)| (t, k.id)), Some(("acme".into(), "k9".into())));
    assert_eq!(store.key_by_hash("hash-nope").await.unwrap(), None);
    let listed: Vec<String> = store.list_keys(T).await.unwrap().into_iter().map(|k| k.id).collect();
    assert_eq!(listed, ["k1", "k2", "k0"], "oldest first");
    assert_eq!(store.count_keys(T, Role::Ingest).await.unwrap(), 2);
    assert_eq!(store.count_keys(T, Role::Admin).await.unwrap(), 1);
    assert_eq!(store.count_keys(T, Role::Read).await.unwrap(), 0);

    store.touch_key(T, "k2", at(50)).await.unwrap();
    let (tenant, touched) = store.key_by_hash("hash-k2").await.unwrap().unwrap();
    assert_eq!((tenant.as_str(), touched.last_used_at), (T, Some(at(50))));

    assert!(!store.delete_key("acme", "k2").await.unwrap(), "keys are per tenant");
    assert!(store.delete_key(T, "k2").await.unwrap());
    assert!(!store.delete_key(T, "k2").await.unwrap());
    assert_eq!(store.count_keys(T, Role::Ingest).await.unwrap(), 1);
    assert_eq!(store.key_by_hash("hash-k2").await.unwrap(), None);
}
