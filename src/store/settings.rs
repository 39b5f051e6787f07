//! `store.*`: where the store is and how often replicas read it, and the duration syntax
//! (`90s`, `12h`, `30d`) token expiries are written in.

use std::time::Duration;

use serde::Deserialize;

use super::db::Location;

/// `store.*`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `sqlite:PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB`.
    pub url: String,
    /// Seconds between reads of the revision counter (1 or 2).
    pub poll_seconds: u64,
    /// Seconds the snapshot may answer token sign-ins after the last successful read; past
    /// that, token sign-ins answer 503 until the store answers again.
    pub stale_seconds: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            url: String::new(),
            poll_seconds: 1,
            stale_seconds: 5,
        }
    }
}

impl StoreSettings {
    /// Checks the values; the message names what to fix.
    pub fn validate(&self) -> Result<Location, (&'static str, String)> {
        if !(1..=2).contains(&self.poll_seconds) {
            return Err((
                "store.poll_seconds",
                "must be 1 or 2: replicas must see a revocation within 5 s".into(),
            ));
        }
        if self.stale_seconds < self.poll_seconds || self.stale_seconds > 60 {
            return Err((
                "store.stale_seconds",
                "must be between store.poll_seconds and 60".into(),
            ));
        }
        Location::parse(&self.url).map_err(|e| ("store.url", e))
    }
}

/// Parses `90s`, `12h`, `30d`, `2w` (a number and one unit: s, m, h, d, w).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: give a unit, e.g. 90s, 12h, 30d"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a number followed by s, m, h, d or w"))?;
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h, d or w")),
    };
    let seconds = n
        .checked_mul(unit_seconds)
        .filter(|s| (1..=10 * 366 * 86_400).contains(s))
        .ok_or_else(|| format!("{text:?}: between 1 s and 10 years"))?;
    Ok(Duration::from_secs(seconds))
}

/// True when `name` can own tokens or name one: 1 to 128 printable characters, no `:` (the
/// Basic separator), no space.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_one_unit() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(43_200));
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(2_592_000)
        );
        for bad in ["", "30", "d", "0s", "1y", "-1d", "99999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_are_checked() {
        let mut s = StoreSettings {
            url: "sqlite:/tmp/x.db".into(),
            ..StoreSettings::default()
        };
        assert!(s.validate().is_ok());
        s.url = "mysql://x".into();
        assert_eq!(s.validate().unwrap_err().0, "store.url");
        s.url = "postgres://u:pw@127.0.0.1:5432/db".into();
        let location = s.validate().unwrap();
        assert_eq!(location.display(), "postgres://127.0.0.1:5432/db");
        s.poll_seconds = 5;
        assert_eq!(s.validate().unwrap_err().0, "store.poll_seconds");
    }
}
