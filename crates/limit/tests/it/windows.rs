//! The check every test makes: the largest number of slots in any half-open window.

/// The largest count of `slots` (any order, any unit) in a half-open interval `[s, s + window)`.
/// The maximum over all starts is reached at a window starting at a slot, so checking those
/// checks every start (each millisecond, each microsecond).
pub fn max_in_window(slots: &[u64], window: u64) -> usize {
    let mut sorted = slots.to_vec();
    sorted.sort_unstable();
    let (mut best, mut j) = (0, 0);
    for i in 0..sorted.len() {
        while j < sorted.len() && sorted[j] < sorted[i] + window {
            j += 1;
        }
        best = best.max(j - i);
    }
    best
}

#[test]
fn counts_half_open_windows() {
    assert_eq!(max_in_window(&[0, 999, 1000], 1000), 2);
    assert_eq!(max_in_window(&[5, 5, 5, 6], 1), 3);
    assert_eq!(max_in_window(&[], 10), 0);
}
