//! Time, behind a port so that tests can fix it.

use time::OffsetDateTime;

use crate::ports::Clock;

/// The system clock, UTC.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that always says the same time.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub OffsetDateTime);

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

/// The system clock moved by the number of seconds a file holds, read at
/// every reading: tests of time-bound rules (run time, daily windows,
/// seven days of history) move a running server's clock with it. A missing
/// or unreadable file means no offset.
#[derive(Debug, Clone)]
pub struct FileOffsetClock(pub std::path::PathBuf);

impl Clock for FileOffsetClock {
    fn now(&self) -> OffsetDateTime {
        let offset = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite())
            .unwrap_or(0.0);
        OffsetDateTime::now_utc() + time::Duration::seconds_f64(offset)
    }
}

/// RFC 3339 with milliseconds, UTC (`2026-01-07T12:00:00.123Z`).
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}
