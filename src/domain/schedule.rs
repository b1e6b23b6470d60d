//! Small value types for rollout planning: maintenance windows and wave sizes.

use std::fmt;

use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ParseError;

/// A daily UTC time range `HH:MM-HH:MM` in which automatic rollouts may start. A range
/// whose end is before its start wraps past midnight (`22:00-04:00`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MaintenanceWindow {
    start_min: u16,
    end_min: u16,
}

impl MaintenanceWindow {
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let err = || {
            ParseError::new(
                "maintenance window",
                input,
                "expected UTC `HH:MM-HH:MM`, e.g. `22:00-04:00`",
            )
        };
        let (a, b) = input.trim().split_once('-').ok_or_else(err)?;
        let minutes = |s: &str| -> Option<u16> {
            let (h, m) = s.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60 && s.trim().len() == 5).then_some(h * 60 + m)
        };
        let (start_min, end_min) = (minutes(a).ok_or_else(err)?, minutes(b).ok_or_else(err)?);
        if start_min == end_min {
            return Err(ParseError::new(
                "maintenance window",
                input,
                "start and end must differ",
            ));
        }
        Ok(Self { start_min, end_min })
    }

    /// True when `now` falls inside the window.
    pub fn contains(&self, now: DateTime<Utc>) -> bool {
        let m = u16::try_from(now.hour() * 60 + now.minute()).unwrap_or(0);
        if self.start_min < self.end_min {
            (self.start_min..self.end_min).contains(&m)
        } else {
            m >= self.start_min || m < self.end_min
        }
    }
}

impl fmt::Display for MaintenanceWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start_min / 60,
            self.start_min % 60,
            self.end_min / 60,
            self.end_min % 60
        )
    }
}

impl fmt::Debug for MaintenanceWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MaintenanceWindow({self})")
    }
}

impl Serialize for MaintenanceWindow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MaintenanceWindow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// How many workspaces a wave holds: a count or a share of the tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchSize {
    Count(u32),
    Percent(u8),
}

impl BatchSize {
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let err = |r: &str| ParseError::new("batch size", input, r);
        let t = input.trim();
        if let Some(p) = t.strip_suffix('%') {
            match p.trim().parse::<u8>() {
                Ok(n) if (1..=100).contains(&n) => Ok(Self::Percent(n)),
                _ => Err(err("a percentage must be 1% to 100%")),
            }
        } else {
            match t.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(Self::Count(n)),
                _ => Err(err("expected a count (`3`) or a percentage (`25%`)")),
            }
        }
    }

    /// The wave size for a tier of `total` workspaces: at least one.
    pub fn wave_len(self, total: usize) -> usize {
        match self {
            Self::Count(n) => n as usize,
            Self::Percent(p) => (total * p as usize).div_ceil(100),
        }
        .max(1)
    }
}

impl fmt::Display for BatchSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, h, m, 0).unwrap()
    }

    #[test]
    fn windows_contain_and_wrap() {
        let w = MaintenanceWindow::parse("02:00-05:30").unwrap();
        assert!(w.contains(at(2, 0)) && w.contains(at(5, 29)));
        assert!(!w.contains(at(5, 30)) && !w.contains(at(1, 59)));
        let w = MaintenanceWindow::parse("22:00-04:00").unwrap();
        assert!(w.contains(at(23, 0)) && w.contains(at(3, 59)) && !w.contains(at(12, 0)));
        assert_eq!(w.to_string(), "22:00-04:00");
        for bad in ["", "2-4", "25:00-01:00", "02:00-02:00", "02:00"] {
            assert!(MaintenanceWindow::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn batch_sizes() {
        assert_eq!(BatchSize::parse("25%").unwrap().wave_len(10), 3);
        assert_eq!(BatchSize::parse("1%").unwrap().wave_len(3), 1);
        assert_eq!(BatchSize::parse("4").unwrap().wave_len(2), 4);
        for bad in ["0", "0%", "101%", "x", "-1"] {
            assert!(BatchSize::parse(bad).is_err(), "{bad}");
        }
    }
}
