//! Settlement and what it leaves behind: rewards settled into balances (points, coins) and
//! entitlements (badges, unlocks), and balance entries an admin posts (a redemption).
//!
//! Each settlement is one unit of work: the reward is locked, checked (still pending, its
//! hold over), and its balance entry or entitlement is written with the reward's new state,
//! so a reward is settled exactly once however many workers try (the second finds it
//! granted). Cash and vouchers are the tenant's fulfilment endpoint's to grant (a webhook);
//! they wait `pending` here.

use crate::notify::{Notification, Subscribers, Topic};
use crate::{Result, Service, ServiceError};
use jiff::Timestamp;
use questline_core::id::{TenantId, UserId, storable};
use questline_core::mission::compile::is_balance_name;
use questline_core::pointer::{FieldError, ValidationErrors};
use questline_core::reward::{Reward, RewardStatus, Settlement, credit_expiry, settlement_of};
use questline_core::wallet::{self, Balance, BalanceEntry, Entitlement};
use questline_store::{Page, UnitOfWork};
use rust_decimal::Decimal;
use std::collections::{BTreeSet, HashMap};

/// Lost races retried before giving up (`Busy`).
const ATTEMPTS: u32 = 5;
/// Longest reason and idempotency key of a posted entry.
const MAX_TEXT: usize = 200;

/// What became of a settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Written now: the reward is `granted`.
    Granted,
    /// Its hold lasts until then; nothing was written.
    NotDue(Timestamp),
    /// Cash or a voucher: the fulfilment webhook decides.
    AwaitsFulfilment,
    /// It was settled (or revoked) before: nothing was written.
    AlreadyDone(RewardStatus),
    /// No such reward.
    NotFound,
}

/// A balance entry to post (`POST /v1/users/{id}/balances/{currency}/entries`).
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub amount: Decimal,
    pub reason: String,
    pub idempotency_key: Option<String>,
}

impl Service {
    /// Settles one reward, if it is pending and its hold is over.
    pub async fn settle_reward(&self, tenant: &TenantId, reward_id: &str) -> Result<Settled> {
        let mut settled = self.settle_rewards(tenant, &[reward_id.to_owned()]).await?;
        Ok(settled.pop().unwrap_or(Settled::NotFound))
    }

    /// Settles many rewards in one unit of work (one commit): what became of each, in the
    /// order given. The rewards are locked in id order, then the balances they move in
    /// (user, currency) order, so concurrent settlements never wait on each other in a cycle.
    pub async fn settle_rewards(&self, tenant: &TenantId, reward_ids: &[String]) -> Result<Vec<Settled>> {
        let now = self.clock.now();
        retry(|| async {
            let mut unit = self.store.begin().await?;
            let (settled, decided) = settle_in(&mut *unit, tenant, reward_ids, now).await?;
            if !decided.is_empty() {
                let jobs = self.jobs.as_deref();
                let subscribers = Subscribers::of(jobs, &mut *unit, tenant).await?;
                let notifications = decided
                    .iter()
                    .filter_map(|r| {
                        let topic = match r.status {
                            RewardStatus::Granted => Topic::RewardGranted,
                            _ => Topic::RewardFailed,
                        };
                        subscribers.want(topic).then(|| Notification::of_reward(topic, r, now))
                    })
                    .collect();
                subscribers.send(jobs, &mut *unit, tenant, notifications, now).await?;
                if let Some(jobs) = jobs {
                    let granted: Vec<&Reward> = decided.iter().filter(|r| r.status == RewardStatus::Granted).collect();
                    let due = crate::notices::of_rewards(&mut *unit, tenant, &granted, now).await?;
                    if !due.is_empty() {
                        jobs.enqueue_notices(&mut *unit, tenant, due, now).await?;
                    }
                }
            }
            unit.commit().await?;
            Ok(settled)
        })
        .await
    }

    /// Settles up to `limit` rewards whose hold is over, soonest first; how many it granted.
    /// For a periodic sweep, so that no reward waits on one lost job.
    pub async fn settle_due(&self, tenant: &TenantId, limit: u32) -> Result<usize> {
        let now = self.clock.now();
        let due = {
            let mut unit = self.store.begin().await?;
            let due = unit.due_rewards(tenant, now, limit).await?;
            unit.commit().await?;
            due
        };
        let ids: Vec<String> = due.into_iter().map(|r| r.id).collect();
        let settled = self.settle_rewards(tenant, &ids).await?;
        Ok(settled.iter().filter(|s| **s == Settled::Granted).count())
    }

    /// Takes back what is left of credits that expired, for up to `limit` balances, the
    /// longest expired first; how much was taken back, in entries written. Each balance in
    /// one unit of work under its lock: its entries replayed oldest credit spent first
    /// ([`wallet::expiries`]), an `expiry` entry per credit with something left, and every
    /// expired credit marked so that it is looked at once.
    pub async fn expire_due(&self, tenant: &TenantId, limit: u32) -> Result<usize> {
        let now = self.clock.now();
        let due = {
            let mut unit = self.store.begin().await?;
            let due = unit.expiring_balances(tenant, now, limit).await?;
            unit.commit().await?;
            due
        };
        let mut written = 0;
        for (user, currency) in due {
            written += retry(|| async {
                let mut unit = self.store.begin().await?;
                let mut balance = unit.lock_balances(tenant, &[(user.clone(), currency.clone())], now).await?[0];
                let (ledger, processed) = unit.balance_ledger(tenant, &user, &currency).await?;
                let expired = wallet::expiries(&ledger, &processed, now);
                let mut entries = Vec::new();
                for e in expired.iter().filter(|e| !e.amount.is_zero()) {
                    // What is left of a credit is what is left of the balance at most.
                    let after = wallet::apply(balance, -e.amount).ok().flatten().ok_or_else(|| {
                        ServiceError::Internal(format!("credit {} outlasts its balance", e.credit_id))
                    })?;
                    balance = after;
                    entries.push(BalanceEntry {
                        id: uuid::Uuid::now_v7().to_string(),
                        user_id: user.as_str().to_owned(),
                        currency: currency.clone(),
                        amount: -e.amount,
                        balance_after: after,
                        reason: "expired".to_owned(),
                        reward_id: None,
                        idempotency_key: None,
                        expires_at: None,
                        expiry_of: Some(e.credit_id.clone()),
                        created_at: now,
                    });
                }
                unit.insert_entries(tenant, &entries).await?;
                let ids: Vec<String> = expired.into_iter().map(|e| e.credit_id).collect();
                unit.mark_expired(tenant, &ids, now).await?;
                unit.commit().await?;
                Ok(entries.len())
            })
            .await?;
        }
        if written > 0 {
            metrics::counter!("questline_balance_expiries_total").increment(written as u64);
        }
        Ok(written)
    }

    pub async fn balances(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<Balance>> {
        if !storable(user.as_str()) {
            return Ok(Vec::new());
        }
        Ok(self.store.balances(tenant, user).await?)
    }

    pub async fn balance_entries(
        &self,
        tenant: &TenantId,
        user: &UserId,
        currency: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<BalanceEntry>> {
        check_currency(currency)?;
        if !storable(user.as_str()) {
            return Ok(Page { items: Vec::new(), next_after: None });
        }
        Ok(self.store.balance_entries(tenant, user, currency, before, limit).await?)
    }

    pub async fn entitlements(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<Entitlement>> {
        if !storable(user.as_str()) {
            return Ok(Vec::new());
        }
        Ok(self.store.entitlements(tenant, user).await?)
    }

    /// Posts an entry to a balance: a credit, or a debit that must not take it below zero
    /// (`InsufficientBalance`). With an idempotency key, posting twice writes once and answers
    /// the first entry (the bool: whether it was written now).
    pub async fn post_entry(
        &self,
        tenant: &TenantId,
        user: &UserId,
        currency: &str,
        entry: NewEntry,
    ) -> Result<(BalanceEntry, bool)> {
        check_entry(currency, &entry)?;
        if !storable(user.as_str()) {
            return Err(ServiceError::invalid("/user_id", "must not contain NUL characters"));
        }
        let now = self.clock.now();
        retry(|| async {
            let mut unit = self.store.begin().await?;
            let key = [(user.clone(), currency.to_owned())];
            let balance = unit.lock_balances(tenant, &key, now).await?[0];
            if let Some(first) = unit.find_entry(tenant, user, currency, entry.idempotency_key.as_deref(), None).await?
            {
                return Ok((first, false));
            }
            let after = match wallet::apply(balance, entry.amount) {
                Ok(Some(after)) => after,
                Ok(None) => return Err(ServiceError::invalid("/amount", "the balance cannot hold that much")),
                Err(short) => return Err(ServiceError::InsufficientBalance(short)),
            };
            let written = BalanceEntry {
                id: uuid::Uuid::now_v7().to_string(),
                user_id: user.as_str().to_owned(),
                currency: currency.to_owned(),
                amount: entry.amount,
                balance_after: after,
                reason: entry.reason.clone(),
                reward_id: None,
                idempotency_key: entry.idempotency_key.clone(),
                expires_at: None,
                expiry_of: None,
                created_at: now,
            };
            unit.insert_entries(tenant, std::slice::from_ref(&written)).await?;
            unit.commit().await?;
            Ok((written, true))
        })
        .await
    }
}

/// Settles what is due of these rewards in `unit`: what became of each, in the order given,
/// and the rewards it decided (granted or failed), as written.
async fn settle_in(
    unit: &mut dyn UnitOfWork,
    tenant: &TenantId,
    reward_ids: &[String],
    now: Timestamp,
) -> Result<(Vec<Settled>, Vec<Reward>)> {
    let locked = unit.lock_rewards(tenant, reward_ids).await?;
    let mut outcome: HashMap<String, Settled> = HashMap::with_capacity(locked.len());
    let mut due = Vec::with_capacity(locked.len());
    for reward in locked {
        let settled = if reward.status != RewardStatus::Pending {
            Some(Settled::AlreadyDone(reward.status))
        } else if reward.hold_until > now {
            Some(Settled::NotDue(reward.hold_until))
        } else {
            None
        };
        match settled {
            Some(s) => {
                outcome.insert(reward.id.clone(), s);
            }
            None => due.push(reward),
        }
    }
    // Every balance these rewards move, locked in one order after the rewards.
    let keys: Vec<(UserId, String)> = due
        .iter()
        .filter_map(|r| match settlement_of(r) {
            Settlement::Balance { currency, .. } => Some((UserId::new(&r.user_id), currency)),
            _ => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let locked = unit.lock_balances(tenant, &keys, now).await?;
    let mut balances: HashMap<(UserId, String), Decimal> = keys.into_iter().zip(locked).collect();
    let (mut entries, mut entitlements, mut settled) = (Vec::new(), Vec::new(), Vec::new());
    for mut reward in due {
        let user = UserId::new(&reward.user_id);
        match settlement_of(&reward) {
            Settlement::Fulfilment => {
                outcome.insert(reward.id.clone(), Settled::AwaitsFulfilment);
                continue;
            }
            Settlement::Balance { currency, amount } => {
                let balance = balances.get_mut(&(user, currency.clone())).expect("locked above");
                match wallet::apply(*balance, amount) {
                    Ok(Some(after)) => {
                        entries.push(BalanceEntry {
                            id: uuid::Uuid::now_v7().to_string(),
                            user_id: reward.user_id.clone(),
                            currency,
                            amount,
                            balance_after: after,
                            reason: format!("reward for mission {}", reward.mission_id),
                            reward_id: Some(reward.id.clone()),
                            idempotency_key: None,
                            expires_at: credit_expiry(&reward, now),
                            expiry_of: None,
                            created_at: now,
                        });
                        *balance = after;
                        reward.status = RewardStatus::Granted;
                    }
                    // A reward amount is positive, so only overflow refuses it: visibly.
                    Ok(None) | Err(_) => {
                        reward.status = RewardStatus::Failed;
                        reward.failure = Some(format!("the {currency} balance cannot hold {amount} more"));
                    }
                }
            }
            Settlement::Entitlement { code } => {
                // Already held (another mission granted the same code): the reward is granted
                // all the same, and the first grant stays.
                entitlements.push((
                    user,
                    Entitlement {
                        code,
                        kind: reward.kind,
                        mission_id: Some(reward.mission_id.clone()),
                        reward_id: Some(reward.id.clone()),
                        granted_at: now,
                    },
                ));
                reward.status = RewardStatus::Granted;
            }
        }
        reward.attempts += 1;
        reward.settled_at = Some(now);
        reward.updated_at = now;
        let result =
            if reward.status == RewardStatus::Granted { Settled::Granted } else { Settled::AlreadyDone(reward.status) };
        outcome.insert(reward.id.clone(), result);
        settled.push(reward);
    }
    // A handful of statements for the whole batch, whatever its size.
    unit.insert_entries(tenant, &entries).await?;
    unit.insert_entitlements(tenant, &entitlements).await?;
    unit.save_settlements(tenant, &settled).await?;
    Ok((reward_ids.iter().map(|id| outcome.get(id).cloned().unwrap_or(Settled::NotFound)).collect(), settled))
}

fn check_currency(currency: &str) -> Result<()> {
    if is_balance_name(currency) {
        Ok(())
    } else {
        Err(ServiceError::invalid("/currency", "a balance name: 1 to 32 of a-z, 0-9, '_' and '-', e.g. coins"))
    }
}

fn check_entry(currency: &str, entry: &NewEntry) -> Result<()> {
    let mut errors = Vec::new();
    if !is_balance_name(currency) {
        errors.push(FieldError::new("/currency", "a balance name: 1 to 32 of a-z, 0-9, '_' and '-', e.g. coins"));
    }
    if entry.amount.is_zero() {
        errors.push(FieldError::new("/amount", "must not be 0"));
    }
    if entry.reason.trim().is_empty() || entry.reason.len() > MAX_TEXT {
        errors.push(FieldError::new("/reason", format!("required, at most {MAX_TEXT} bytes")));
    }
    if let Some(key) = &entry.idempotency_key
        && (key.is_empty() || key.len() > MAX_TEXT || !questline_core::id::storable(key))
    {
        errors.push(FieldError::new("/idempotency_key", format!("1 to {MAX_TEXT} bytes, without NUL characters")));
    }
    if errors.is_empty() { Ok(()) } else { Err(ServiceError::Invalid(ValidationErrors(errors))) }
}

/// Runs `attempt` again while it loses races, as ingest does.
async fn retry<T, F, Fut>(mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(ServiceError::Busy) if tries < ATTEMPTS => continue,
            other => return other,
        }
    }
}
