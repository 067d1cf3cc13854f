//! Proration: what the unused part of a period is worth.

use crate::db::Timestamp;

/// The credit for the part of `[start, end)` not yet used at `now`, of a period that cost
/// `price`: `price × remaining / total`, rounded down (never more than was paid), in whole
/// microseconds so it does not depend on how the period is split.
pub fn unused_credit(price: i64, start: Timestamp, end: Timestamp, now: Timestamp) -> i64 {
    let total = end.micros() - start.micros();
    if price <= 0 || total <= 0 || now >= end {
        return 0;
    }
    let remaining = end.micros() - now.micros().max(start.micros());
    let credit = i128::from(price) * i128::from(remaining) / i128::from(total);
    i64::try_from(credit).unwrap_or(price).clamp(0, price)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use proptest::prelude::*;

    fn t(hours: i64) -> Timestamp {
        Timestamp::from_micros(1_767_225_600_000_000)
            .expect("valid")
            .plus(Duration::hours(hours))
    }

    #[test]
    fn credits_the_unused_share() {
        let (start, end) = (t(0), t(30 * 24));
        assert_eq!(unused_credit(3000, start, end, start), 3000);
        assert_eq!(unused_credit(3000, start, end, t(10 * 24)), 2000);
        assert_eq!(unused_credit(3000, start, end, t(15 * 24)), 1500);
        assert_eq!(unused_credit(3000, start, end, end), 0);
        assert_eq!(unused_credit(3000, start, end, t(40 * 24)), 0);
        assert_eq!(unused_credit(1000, start, end, t(1)), 998, "rounded down");
        assert_eq!(unused_credit(0, start, end, start), 0);
        assert_eq!(
            unused_credit(i64::MAX, start, end, t(1)),
            9210561797914699729
        );
    }

    proptest! {
        #[test]
        fn never_negative_never_more_than_paid(price in 0i64..10_000_000, len in 1i64..10_000, at in -100i64..20_000) {
            let credit = unused_credit(price, t(0), t(len), t(at));
            prop_assert!(credit >= 0 && credit <= price);
        }

        #[test]
        fn later_means_less(price in 0i64..10_000_000, len in 1i64..10_000, a in 0i64..10_000, b in 0i64..10_000) {
            let (early, late) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(unused_credit(price, t(0), t(len), t(early)) >= unused_credit(price, t(0), t(len), t(late)));
        }
    }
}
