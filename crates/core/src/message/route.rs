//! Which provider to try first for a message: by what one more message adds to the bill.
//!
//! A fixed-price provider with capacity left this month costs nothing more per message, nor
//! does one still behind its committed monthly volume (that volume is paid for whether it
//! is used or not); after those, the cheapest per-message price. The dispatcher asks each
//! candidate's limiter in this order for a slot before the message's deadline, so that a
//! cheaper provider that is merely busy is waited for, and the next one is taken only when
//! the wait would miss the deadline (or the cheaper one failed this message).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::time::Duration;

/// How a provider charges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Pricing {
    /// A price per message sent.
    PerMessage(Decimal),
    /// A fixed monthly fee for a capacity of messages a month; past it, none is sent there.
    Fixed { monthly: Decimal, capacity: u64 },
}

/// What the router knows of one provider of the message's channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderState<'a> {
    pub name: &'a str,
    pub pricing: &'a Pricing,
    /// A monthly volume promised to the provider.
    pub committed: Option<u64>,
    /// Messages sent through it this calendar month.
    pub sent_this_month: u64,
    /// This message failed there already (a 5xx, a timeout): tried again only after every
    /// other provider.
    pub failed_this_message: bool,
}

/// Why a provider is where it is in the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// Fixed price, capacity left: paid for already.
    Capacity,
    /// Behind its committed volume: paid for already.
    Commitment,
    /// Each message costs its price.
    PerMessage,
}

/// A provider to try, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Its index in the states given.
    pub index: usize,
    pub tier: Tier,
    /// What sending this message there adds to the bill.
    pub marginal_cost: Decimal,
}

/// The providers worth trying for a message, cheapest at the margin first; a fixed-price
/// provider whose monthly capacity is spent is left out.
pub fn rank(providers: &[ProviderState<'_>]) -> Vec<Candidate> {
    let mut candidates: Vec<(Candidate, &ProviderState<'_>)> = providers
        .iter()
        .enumerate()
        .filter_map(|(index, p)| {
            let (tier, marginal_cost) = match (p.pricing, p.committed) {
                (Pricing::Fixed { capacity, .. }, _) if p.sent_this_month >= *capacity => return None,
                (Pricing::Fixed { .. }, _) => (Tier::Capacity, Decimal::ZERO),
                (Pricing::PerMessage(_), Some(c)) if p.sent_this_month < c => (Tier::Commitment, Decimal::ZERO),
                (Pricing::PerMessage(price), _) => (Tier::PerMessage, *price),
            };
            Some((Candidate { index, tier, marginal_cost }, p))
        })
        .collect();
    candidates.sort_by(|(a, pa), (b, pb)| {
        pa.failed_this_message
            .cmp(&pb.failed_this_message)
            .then(a.tier.cmp(&b.tier))
            .then(a.marginal_cost.cmp(&b.marginal_cost))
            .then_with(|| behind_first(pa, pb))
            .then(pa.name.cmp(pb.name))
    });
    candidates.into_iter().map(|(c, _)| c).collect()
}

/// Among providers behind their commitments, the furthest behind (the smallest share of its
/// commitment sent) first, so that each commitment is met.
fn behind_first(a: &ProviderState<'_>, b: &ProviderState<'_>) -> Ordering {
    match (a.committed, b.committed) {
        // a.sent / a.committed < b.sent / b.committed, without division.
        (Some(ca), Some(cb)) => {
            (u128::from(a.sent_this_month) * u128::from(cb)).cmp(&(u128::from(b.sent_this_month) * u128::from(ca)))
        }
        _ => Ordering::Equal,
    }
}

/// How long a message may wait for a slot: until its deadline, less the time a send takes
/// to reach the provider; without a deadline, up to `horizon`. `None`: too late to send.
pub fn max_wait(deadline_in: Option<Duration>, send_time: Duration, horizon: Duration) -> Option<Duration> {
    match deadline_in {
        None => Some(horizon),
        Some(left) => left.checked_sub(send_time).filter(|w| !w.is_zero()).map(|w| w.min(horizon)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn per(price: &str) -> Pricing {
        Pricing::PerMessage(price.parse().unwrap())
    }

    fn state<'a>(name: &'a str, pricing: &'a Pricing, committed: Option<u64>, sent: u64) -> ProviderState<'a> {
        ProviderState { name, pricing, committed, sent_this_month: sent, failed_this_message: false }
    }

    fn names<'a>(states: &[ProviderState<'a>]) -> Vec<&'a str> {
        rank(states).into_iter().map(|c| states[c.index].name).collect()
    }

    #[test]
    fn paid_for_capacity_comes_first_then_commitments_then_the_cheapest_price() {
        let fixed = Pricing::Fixed { monthly: "10000".parse().unwrap(), capacity: 2_000_000 };
        let (dear, cheap, committed) = (per("0.20"), per("0.10"), per("0.15"));
        let states = [
            state("dear", &dear, None, 0),
            state("cheap", &cheap, None, 0),
            state("committed", &committed, Some(500_000), 10),
            state("fixed", &fixed, None, 5),
        ];
        assert_eq!(names(&states), ["fixed", "committed", "cheap", "dear"]);
        let ranked = rank(&states);
        assert_eq!(ranked[0].marginal_cost, Decimal::ZERO);
        assert_eq!(ranked[2].marginal_cost, "0.10".parse::<Decimal>().unwrap());
    }

    #[test]
    fn a_met_commitment_is_priced_like_any_other_and_spent_capacity_is_left_out() {
        let fixed = Pricing::Fixed { monthly: "10000".parse().unwrap(), capacity: 100 };
        let (cheap, committed) = (per("0.10"), per("0.15"));
        let states = [
            state("fixed", &fixed, None, 100),
            state("committed", &committed, Some(500), 500),
            state("cheap", &cheap, None, 0),
        ];
        assert_eq!(names(&states), ["cheap", "committed"]);
    }

    #[test]
    fn a_provider_that_failed_this_message_goes_last() {
        let (cheap, dear) = (per("0.10"), per("0.20"));
        let mut states = [state("cheap", &cheap, None, 0), state("dear", &dear, None, 0)];
        states[0].failed_this_message = true;
        assert_eq!(names(&states), ["dear", "cheap"]);
    }

    #[test]
    fn the_commitment_furthest_behind_comes_first() {
        let p = per("0.10");
        let states = [state("half", &p, Some(100), 50), state("tenth", &p, Some(1000), 100)];
        assert_eq!(names(&states), ["tenth", "half"]);
    }

    #[test]
    fn the_wait_ends_before_the_deadline() {
        let s = Duration::from_secs;
        assert_eq!(max_wait(Some(s(10)), Duration::from_millis(500), s(60)), Some(Duration::from_millis(9500)));
        assert_eq!(max_wait(Some(s(100)), s(1), s(60)), Some(s(60)));
        assert_eq!(max_wait(Some(Duration::from_millis(400)), Duration::from_millis(500), s(60)), None);
        assert_eq!(max_wait(None, s(1), s(60)), Some(s(60)));
    }

    proptest! {
        /// Whatever the states, the order never puts a dearer provider at the margin before
        /// a cheaper one, among providers that have not failed this message.
        #[test]
        fn the_order_never_rises_in_marginal_cost(
            specs in proptest::collection::vec((0u32..300, proptest::option::of(0u64..1000), 0u64..1000, any::<bool>(), any::<bool>()), 1..8)
        ) {
            let pricings: Vec<Pricing> = specs.iter().map(|(cents, _, _, fixed, _)| if *fixed {
                Pricing::Fixed { monthly: Decimal::from(1000), capacity: 500 }
            } else {
                Pricing::PerMessage(Decimal::new(i64::from(*cents), 2))
            }).collect();
            let names: Vec<String> = (0..specs.len()).map(|i| format!("p{i}")).collect();
            let states: Vec<ProviderState<'_>> = specs.iter().enumerate().map(|(i, (_, committed, sent, _, failed))| ProviderState {
                name: &names[i], pricing: &pricings[i], committed: *committed, sent_this_month: *sent, failed_this_message: *failed,
            }).collect();
            let ranked = rank(&states);
            for pair in ranked.windows(2) {
                let (a, b) = (&states[pair[0].index], &states[pair[1].index]);
                if a.failed_this_message == b.failed_this_message {
                    prop_assert!(pair[0].marginal_cost <= pair[1].marginal_cost);
                } else {
                    prop_assert!(!a.failed_this_message);
                }
            }
            // Only spent fixed capacity is left out.
            for (i, s) in states.iter().enumerate() {
                let spent = matches!(s.pricing, Pricing::Fixed { capacity, .. } if s.sent_this_month >= *capacity);
                prop_assert_eq!(ranked.iter().any(|c| c.index == i), !spent);
            }
        }
    }
}
