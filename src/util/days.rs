//! The days of a chart: a span of UTC days where no day goes missing. Short spans show every
//! day; longer ones fold each run of empty days into one row that says how many, so that a
//! gap is always visible and a sparse log of many years still fits a screen.

/// Spans of at most this many days are shown day by day.
pub const MAX_FILLED_SPAN: i64 = 62;

/// One row of a chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    /// A day (days since 1970-01-01).
    Day(i64),
    /// A run of days with nothing, first and last included.
    Gap { first: i64, last: i64 },
}

/// The rows from `start` to `end` (included) for the days in `busy` (sorted, all within the
/// span): every day when the span is short, else the busy days and the runs between them.
/// At most `2 * busy + 1` rows for a long span.
pub fn rows(busy: &[i64], start: i64, end: i64) -> Vec<Row> {
    if end < start {
        return Vec::new();
    }
    if end - start < MAX_FILLED_SPAN {
        return (start..=end).map(Row::Day).collect();
    }
    let mut out = Vec::with_capacity(busy.len() * 2 + 1);
    let mut next = start;
    let gap = |out: &mut Vec<Row>, first: i64, last: i64| match last - first {
        d if d < 0 => {}
        0 => out.push(Row::Day(first)),
        _ => out.push(Row::Gap { first, last }),
    };
    for &d in busy.iter().filter(|&&d| d >= start && d <= end) {
        if d < next {
            continue;
        }
        gap(&mut out, next, d - 1);
        out.push(Row::Day(d));
        next = d + 1;
    }
    gap(&mut out, next, end);
    out
}

/// Today's day number (UTC).
pub fn today() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs / 86_400).unwrap_or(0)
}

/// The first day of a `--since DATE` / `--days N` choice: DATE (`YYYY-MM-DD`), or the day
/// `N - 1` days before `today` (so `--days 1` is today alone).
pub fn since(date: Option<&str>, days: Option<u32>, today: i64) -> Result<Option<i64>, String> {
    match (date, days) {
        (Some(d), _) => super::dates::day_number(d)
            .filter(|&n| d.len() == 10 && n >= 0)
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "--since {d:?}: give a day from 1970-01-01 on as YYYY-MM-DD, e.g. 2026-11-01"
                )
            }),
        // Never before 1970: the span stays bounded.
        (None, Some(n)) => Ok(Some((today - i64::from(n.max(1)) + 1).max(0))),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_of_six_days_is_always_visible() {
        // Short span: every day, the six empty ones too.
        let r = rows(&[0, 7], 0, 7);
        assert_eq!(r.len(), 8);
        assert_eq!(r[3], Row::Day(3));
        // Long span: the empty runs fold, one row each, with their length.
        let r = rows(&[0, 7, 8, 500], 0, 502);
        assert_eq!(
            r,
            vec![
                Row::Day(0),
                Row::Gap { first: 1, last: 6 },
                Row::Day(7),
                Row::Day(8),
                Row::Gap {
                    first: 9,
                    last: 499
                },
                Row::Day(500),
                Row::Gap {
                    first: 501,
                    last: 502
                },
            ]
        );
        // A lone empty day is a day, not a gap.
        let r = rows(&[0, 2, 100], 0, 100);
        assert_eq!(r[1], Row::Day(1));
        assert!(rows(&[], 5, 4).is_empty());
    }

    #[test]
    fn since_reads_a_date_or_a_number_of_days() {
        assert_eq!(since(Some("1970-01-11"), None, 99), Ok(Some(10)));
        assert_eq!(since(None, Some(7), 100), Ok(Some(94)));
        assert_eq!(since(None, None, 100), Ok(None));
        assert_eq!(since(None, Some(u32::MAX), 100), Ok(Some(0)));
        assert!(since(Some("yesterday"), None, 1).is_err());
        assert!(
            since(Some("0001-01-01"), None, 1).is_err(),
            "a span without bound"
        );
        assert!(since(Some("2026-11-01T00"), None, 1).is_err());
    }
}
