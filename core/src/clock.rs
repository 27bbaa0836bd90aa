//! Time, injected. The core never reads the OS clock in its logic: every
//! timestamp and deadline comes from a [`Clock`] handed to the facade.
//! [`SystemClock`] is the production clock; [`ManualClock`] lets tests and
//! embedders move time by hand instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (UTC). The one time unit of the core.
pub type UnixMillis = i64;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time in Unix milliseconds.
    fn now(&self) -> UnixMillis;
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        // A clock before 1970 is a misconfigured machine; treat it as the epoch
        // rather than panicking inside a request.
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock that only moves when told to. Shared between threads by reference.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A manual clock that reads `start` until moved.
    pub fn new(start: UnixMillis) -> Self {
        ManualClock {
            now: AtomicI64::new(start),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let millis = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now.fetch_add(millis, Ordering::SeqCst);
    }

    /// Sets the clock to `to` (forward or backward).
    pub fn set(&self, to: UnixMillis) {
        self.now.store(to, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        self.now.load(Ordering::SeqCst)
    }
}

/// Formats Unix milliseconds as RFC 3339 UTC with millisecond precision,
/// e.g. `2026-11-23T08:58:23.000Z`. Pure arithmetic (Howard Hinnant's
/// civil-from-days), so the core needs no date crate.
pub fn format_rfc3339(at: UnixMillis) -> String {
    let millis = at.rem_euclid(1000);
    let secs = at.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let secs_of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        secs_of_day / 3600,
        (secs_of_day / 60) % 60,
        secs_of_day % 60
    )
}

/// One UTC day, in milliseconds.
pub const UTC_DAY_MS: i64 = 86_400_000;

/// The UTC calendar month `at` falls in: its name (`2026-12`), its first
/// instant and the first instant of the next month.
pub fn utc_month(at: UnixMillis) -> (String, UnixMillis, UnixMillis) {
    let (year, month, _) = civil_from_days(at.div_euclid(UTC_DAY_MS));
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    (
        format!("{year:04}-{month:02}"),
        days_from_civil(year, month, 1) * UTC_DAY_MS,
        days_from_civil(next_year, next_month, 1) * UTC_DAY_MS,
    )
}

/// Days since the Unix epoch of a proleptic Gregorian date (Howard
/// Hinnant's days-from-civil), the inverse of `civil_from_days`.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_start_and_end_at_utc_midnight_on_the_first() {
        // 2026-12-02T03:24:38Z.
        let (name, start, next) = utc_month(1_796_181_878_000);
        assert_eq!(name, "2026-12");
        assert_eq!(format_rfc3339(start), "2026-12-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(next), "2027-01-01T00:00:00.000Z");
        // A leap February, and its last millisecond.
        let (name, start, next) = utc_month(1_709_251_199_999);
        assert_eq!(name, "2024-02");
        assert_eq!(format_rfc3339(start), "2024-02-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(next), "2024-03-01T00:00:00.000Z");
        for days in [-800_000, -1, 0, 59, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now(), 1_000);
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.now(), 3_000);
        clock.set(10);
        assert_eq!(clock.now(), 10);
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        let check = |at: UnixMillis, expected: &str| assert_eq!(format_rfc3339(at), expected);
        check(0, "1970-01-01T00:00:00.000Z");
        check(951_782_400_123, "2000-02-29T00:00:00.123Z");
        check(1_795_251_503_000, "2026-11-21T08:58:23.000Z");
        check(-1, "1969-12-31T23:59:59.999Z");
    }
}
