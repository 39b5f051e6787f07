//! Where the time comes from: the system clock in service, a fixed or hand-moved one in tests;
//! and the RFC 3339 text of a time, as tokens and the audit log write it ([`rfc3339`]).

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, SecondsFormat, TimeDelta, Timelike, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// The current time, UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock stopped at one instant, for tests.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// A clock that stands still until it is moved by hand: tests (and anything else that
/// simulates time) step it with [`ManualClock::advance`] or [`ManualClock::set`].
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock(Mutex::new(start))
    }

    /// Moves the clock by `by` (backwards when negative).
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }

    /// Puts the clock at `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(TimeDelta::seconds(90));
        assert_eq!(clock.now(), start + TimeDelta::seconds(90));
        clock.advance(TimeDelta::seconds(-30));
        assert_eq!(clock.now(), start + TimeDelta::seconds(60));
        clock.set(start);
        assert_eq!(clock.now(), start);
    }
}

/// The RFC 3339 UTC text of a time ([`rfc3339`]), held inline: no allocation.
#[derive(Clone, Copy)]
pub struct Rfc3339 {
    bytes: [u8; 32],
    len: usize,
}

impl Rfc3339 {
    /// The text, e.g. `2026-12-02T16:00:00Z` or `2026-12-02T16:00:00.123Z`.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written (and a cut write leaves whole characters).
        self.bytes
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Write for Rfc3339 {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let into = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        into.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// `time` as chrono's `to_rfc3339_opts(format, true)` writes it (`Secs` or `Millis`), without
/// allocating. The date and time to the second, the part that takes chrono's calendar work,
/// is kept per thread for the second it stands for: every token and audit line within one
/// second reuses it.
pub fn rfc3339(time: &DateTime<Utc>, format: SecondsFormat) -> Rfc3339 {
    thread_local! {
        /// The last second formatted on this thread and its `YYYY-MM-DDTHH:MM:SS`.
        static LAST: Cell<(i64, [u8; 19])> = const { Cell::new((i64::MIN, [0; 19])) };
    }
    let mut out = Rfc3339 {
        bytes: [0; 32],
        len: 0,
    };
    let second = time.timestamp();
    let millis = time.nanosecond() / 1_000_000;
    // A leap second (nanoseconds past 10^9) and years outside 0..=9999 take chrono's way.
    let plain = millis < 1_000 && matches!(format, SecondsFormat::Secs | SecondsFormat::Millis);
    // Only plain times touch the cache: a leap second shares its timestamp with the second
    // before it, and its `:60` must not be kept for that second's other instants.
    let prefix = plain
        .then(|| {
            LAST.with(|last| {
                let (cached, text) = last.get();
                if cached == second {
                    return Some(text);
                }
                let mut text = Rfc3339 {
                    bytes: [0; 32],
                    len: 0,
                };
                write!(text, "{}", time.format("%Y-%m-%dT%H:%M:%S")).ok()?;
                let prefix: [u8; 19] = text.bytes.get(..19)?.try_into().ok()?;
                if text.len != 19 {
                    return None;
                }
                last.set((second, prefix));
                Some(prefix)
            })
        })
        .flatten();
    if let Some(prefix) = prefix {
        out.bytes[..19].copy_from_slice(&prefix);
        out.len = 19;
        let written = match format {
            SecondsFormat::Millis => write!(out, ".{millis:03}Z"),
            _ => out.write_str("Z"),
        };
        if written.is_ok() {
            return out;
        }
    }
    out.len = 0;
    // Fits: chrono's widest RFC 3339 text is under 32 bytes for these formats; if it were
    // ever cut, the text is shorter, never wrong in what it shows.
    let _ = out.write_str(&time.to_rfc3339_opts(format, true));
    out
}

#[cfg(test)]
mod rfc3339_tests {
    use super::*;

    #[test]
    fn the_text_is_what_chrono_writes() {
        let mut times: Vec<DateTime<Utc>> = vec![
            DateTime::from_timestamp(0, 0).unwrap(),
            DateTime::from_timestamp(1_415_387_015, 999_999_999).unwrap(),
            DateTime::from_timestamp(1_796_244_889, 1_000_000).unwrap(),
            DateTime::from_timestamp(253_402_300_799, 0).unwrap(), // 9999-12-31T23:59:59
            DateTime::from_timestamp(253_402_300_800, 5_000_000).unwrap(), // year 10000
            DateTime::from_timestamp(-62_167_219_200, 0).unwrap(), // year 0
            DateTime::from_timestamp(-62_167_219_201, 0).unwrap(), // year -1
            DateTime::from_timestamp(1_483_228_799, 1_500_000_000).unwrap(), // a leap second
            // The second the leap second shares its timestamp with, after it.
            DateTime::from_timestamp(1_483_228_799, 250_000_000).unwrap(),
        ];
        // A walk over many seconds and sub-second values, twice each (cached and not).
        let mut t = 1_700_000_000_i64;
        for i in 0..2000_u32 {
            t += i64::from(i % 7) * 3_607 + 1;
            let at = DateTime::from_timestamp(t, i * 499_999).unwrap();
            times.push(at);
            times.push(at);
        }
        for time in &times {
            for format in [SecondsFormat::Secs, SecondsFormat::Millis] {
                assert_eq!(
                    rfc3339(time, format).as_str(),
                    time.to_rfc3339_opts(format, true),
                    "{format:?}"
                );
            }
        }
    }
}
