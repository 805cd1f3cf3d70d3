//! Messages as the dispatcher reads and writes them: many read, or locked and saved in one
//! unit, per tenant; what each provider sent counted by the batch; a rolled-back unit leaves
//! nothing.

use crate::{T, TestDb, at, tenant};
use questline_core::message::{Channel, Message, MessageStatus};

fn message(id: &str) -> Message {
    Message {
        id: id.into(),
        channel: Channel::Sms,
        to: "+919876543210".into(),
        subject: None,
        body: "hi".into(),
        template: None,
        deadline: None,
        priority: 5,
        user_id: None,
        status: MessageStatus::Queued,
        provider: None,
        cost: None,
        currency: None,
        attempts: vec![],
        booking: None,
        sent_at: None,
        created_at: at(0),
        fingerprint: format!("fp-{id}"),
    }
}

pub async fn messages_are_locked_and_saved_many_at_once(db: &TestDb) {
    let store = db.open().await;
    let mut unit = store.begin().await.unwrap();
    let fresh = unit.insert_messages(&T, &[message("a"), message("b"), message("c")]).await.unwrap();
    assert_eq!(fresh, [None, None, None]);
    unit.insert_messages(&tenant("acme"), &[message("a")]).await.unwrap();
    unit.commit().await.unwrap();

    let mut unit = store.begin().await.unwrap();
    let mut locked = unit.lock_messages(&T, &["c", "missing", "a", "c"]).await.unwrap();
    locked.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(locked.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["a", "c"], "the missing one left out");
    for m in &mut locked {
        m.status = MessageStatus::Sent;
        m.provider = Some("acme-sms".into());
    }
    unit.save_messages(&T, &locked, at(1)).await.unwrap();
    unit.count_sent("acme-sms", "2026-12", 2).await.unwrap();
    drop(unit);
    assert_eq!(store.message(&T, "a").await.unwrap().unwrap().status, MessageStatus::Queued, "rolled back");
    assert!(store.sent_in_month("2026-12").await.unwrap().is_empty());

    let mut unit = store.begin().await.unwrap();
    unit.save_messages(&T, &locked, at(1)).await.unwrap();
    unit.count_sent("acme-sms", "2026-12", 2).await.unwrap();
    unit.count_sent("acme-sms", "2026-12", 3).await.unwrap();
    unit.commit().await.unwrap();
    for (id, status) in [("a", MessageStatus::Sent), ("b", MessageStatus::Queued), ("c", MessageStatus::Sent)] {
        assert_eq!(store.message(&T, id).await.unwrap().unwrap().status, status, "{id}");
    }
    let mut read = store.messages(&T, &["c", "missing", "a"]).await.unwrap();
    read.sort_by(|x, y| x.id.cmp(&y.id));
    let read: Vec<(&str, MessageStatus)> = read.iter().map(|m| (m.id.as_str(), m.status)).collect();
    assert_eq!(read, [("a", MessageStatus::Sent), ("c", MessageStatus::Sent)], "read many, the missing one left out");
    let other = store.message(&tenant("acme"), "a").await.unwrap().unwrap();
    assert_eq!(other.status, MessageStatus::Queued, "another tenant's message of the same id");
    assert_eq!(store.sent_in_month("2026-12").await.unwrap(), [("acme-sms".to_owned(), 5)]);

    // Saving a message that is not there is an error, not a silent no-op.
    let mut unit = store.begin().await.unwrap();
    assert!(unit.save_messages(&T, &[message("never-inserted")], at(2)).await.is_err());
}
