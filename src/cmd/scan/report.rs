//! The report of a scan: counts, per-day histogram, samples, and its text rendering.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::rules::Kind;
use crate::util::dates::{day_number, day_string};
use crate::util::days;
use crate::util::text::bar;
use crate::verdict::Verdict;

use super::judge::Judged;
use super::{BAR_WIDTH, Select};

/// Counts for one verdict and kind.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CountRow {
    pub verdict: &'static str,
    pub kind: Option<&'static str>,
    pub count: usize,
}

/// Backscatter on one day.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DayRow {
    /// `YYYY-MM-DD`, UTC.
    pub date: String,
    pub backscatter: usize,
}

/// A message that moves (or would move).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Listed {
    pub verdict: &'static str,
    pub kind: Option<&'static str>,
    /// When it arrived, `YYYY-MM-DDTHH:MM:SSZ` (see the module comment of `scan`).
    pub arrived: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
    /// Where it is (was): the Maildir file, or `message N at byte B` of the mbox.
    pub place: String,
}

/// What a scan found and did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub path: String,
    /// "maildir" or "mbox".
    pub format: &'static str,
    /// The Maildir folders scanned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub folders: Vec<String>,
    /// Messages judged.
    pub messages: usize,
    /// Messages that could not be read.
    pub unreadable: usize,
    /// Per verdict (all four, zeros included).
    pub verdicts: BTreeMap<&'static str, usize>,
    /// Per verdict and kind (only the combinations seen).
    pub counts: Vec<CountRow>,
    /// Every day from the first backscatter (or `--since`) to the last, empty days included.
    pub backscatter_per_day: Vec<DayRow>,
    /// `--since`/`--days`: only bounces that arrived on this day or later move.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Every message that moves (or, in a dry run, would move), in folder order.
    pub selected: Vec<Listed>,
    /// Where the messages go (or would go).
    pub target: String,
    /// "backscatter", or "backscatter and unverified bounces".
    pub moving: &'static str,
    /// True with --apply.
    pub apply: bool,
    /// Messages that are (or, in a dry run, would be) moved.
    pub to_move: usize,
    /// Messages moved by this run.
    pub moved: usize,
    /// Messages an interrupted earlier run had already moved (found in the target, identical).
    pub already_moved: usize,
    /// Maildir messages that disappeared while the scan ran (the mail server moved or expunged
    /// them): not counted, not moved; a second run picks up those that were only moved.
    pub vanished: usize,
    /// Messages an interrupted earlier run had left half moved and this run finished (mbox).
    pub recovered: usize,
    pub notes: Vec<String>,
    pub errors: Vec<String>,
    pub interrupted: bool,
    pub jobs: usize,
    pub elapsed_ms: u128,
    pub messages_per_second: f64,
    #[serde(skip)]
    select: Select,
}

impl Report {
    pub(super) fn new(path: &Path, format: &'static str, select: Select) -> Report {
        Report {
            path: path.display().to_string(),
            format,
            folders: Vec::new(),
            messages: 0,
            unreadable: 0,
            verdicts: BTreeMap::new(),
            counts: Vec::new(),
            backscatter_per_day: Vec::new(),
            since: select.since.map(day_string),
            selected: Vec::new(),
            target: String::new(),
            moving: select.describe(),
            apply: false,
            to_move: 0,
            moved: 0,
            already_moved: 0,
            vanished: 0,
            recovered: 0,
            notes: Vec::new(),
            errors: Vec::new(),
            interrupted: false,
            jobs: 0,
            elapsed_ms: 0,
            messages_per_second: 0.0,
            select,
        }
    }

    /// Fills the counts and the histogram from the judgements.
    pub(super) fn tally<'a>(&mut self, judged: impl IntoIterator<Item = &'a Judged>) {
        let mut per: BTreeMap<(Verdict, Option<Kind>), usize> = BTreeMap::new();
        let mut days: BTreeMap<i64, usize> = BTreeMap::new();
        let mut undated = 0;
        for j in judged {
            *per.entry((j.verdict, j.kind)).or_default() += 1;
            if j.verdict == Verdict::Backscatter && self.select.counts(j) {
                match j.day() {
                    Some(d) => *days.entry(d).or_default() += 1,
                    None => undated += 1,
                }
            }
        }
        self.messages = per.values().sum();
        self.verdicts = [
            Verdict::Clean,
            Verdict::LegitBounce,
            Verdict::Backscatter,
            Verdict::UnverifiedBounce,
        ]
        .iter()
        .map(|v| (v.as_str(), 0))
        .collect();
        for (&(v, _), &n) in &per {
            *self.verdicts.entry(v.as_str()).or_default() += n;
        }
        self.counts = per
            .into_iter()
            .map(|((v, k), count)| CountRow {
                verdict: v.as_str(),
                kind: k.map(Kind::as_str),
                count,
            })
            .collect();
        self.backscatter_per_day = day_rows(&days, self.select.since);
        if undated > 0 {
            self.notes.push(format!(
                "{undated} backscatter messages have no date and are not in the histogram"
            ));
        }
    }

    /// Adds a message that moves (or would) to the list.
    pub(super) fn list(&mut self, j: &Judged, place: String) {
        self.selected.push(Listed {
            verdict: j.verdict.as_str(),
            kind: j.kind.map(Kind::as_str),
            arrived: j.arrived.map(time_string),
            from: j.from.as_deref().map(str::to_string),
            subject: j.subject.as_deref().map(str::to_string),
            place,
        });
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of seconds since the epoch.
fn time_string(t: i64) -> String {
    let rem = t.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        day_string(t.div_euclid(86_400)),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Every day from the first (or `since`) to the last, empty days as 0.
fn day_rows(days: &BTreeMap<i64, usize>, since: Option<i64>) -> Vec<DayRow> {
    let (Some((&first, _)), Some((&last, _))) = (days.first_key_value(), days.last_key_value())
    else {
        return Vec::new();
    };
    (since.unwrap_or(first).min(first)..=last)
        .map(|d| DayRow {
            date: day_string(d),
            backscatter: days.get(&d).copied().unwrap_or(0),
        })
        .collect()
}

/// A From or Subject on one line of the list: line ends shown as `\n` (every other control
/// character is escaped when the report is printed).
fn one_line(text: Option<&str>) -> String {
    text.unwrap_or("-")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

pub(super) fn render_text(r: &Report) -> String {
    let mut t = String::new();
    let kind = if r.format == "mbox" {
        "mbox"
    } else {
        "Maildir"
    };
    let _ = write!(t, "Scanned {} ({kind}", r.path);
    if r.folders.len() > 1 {
        let _ = write!(t, ", {} folders", r.folders.len());
    }
    let _ = writeln!(
        t,
        "): {} messages in {:.2} s ({:.0} messages/s, {} jobs)",
        r.messages,
        r.elapsed_ms as f64 / 1000.0,
        r.messages_per_second,
        r.jobs
    );
    let _ = writeln!(t, "\n{:<20} {:<20} {:>8}", "verdict", "kind", "count");
    let order = [
        Verdict::Clean,
        Verdict::LegitBounce,
        Verdict::Backscatter,
        Verdict::UnverifiedBounce,
    ];
    for verdict in order.map(Verdict::as_str) {
        let total = r.verdicts.get(verdict).copied().unwrap_or(0);
        let rows: Vec<&CountRow> = r.counts.iter().filter(|c| c.verdict == verdict).collect();
        if rows.len() > 1 {
            for c in &rows {
                let _ = writeln!(
                    t,
                    "{:<20} {:<20} {:>8}",
                    c.verdict,
                    c.kind.unwrap_or("-"),
                    c.count
                );
            }
            let _ = writeln!(t, "{:<20} {:<20} {:>8}", verdict, "(all kinds)", total);
        } else {
            let k = rows.first().and_then(|c| c.kind).unwrap_or("-");
            let _ = writeln!(t, "{:<20} {:<20} {:>8}", verdict, k, total);
        }
    }
    let _ = writeln!(t, "{:<20} {:<20} {:>8}", "total", "", r.messages);
    if r.unreadable > 0 {
        let _ = writeln!(t, "{:<20} {:<20} {:>8}", "unreadable", "", r.unreadable);
    }
    if !r.backscatter_per_day.is_empty() {
        let max = r
            .backscatter_per_day
            .iter()
            .map(|d| d.backscatter)
            .max()
            .unwrap_or(0);
        let _ = writeln!(t, "\nBackscatter per day (arrival, UTC):");
        let start = r
            .backscatter_per_day
            .first()
            .and_then(|d| day_number(&d.date))
            .unwrap_or(0);
        let count = |d: i64| {
            usize::try_from(d - start)
                .ok()
                .and_then(|i| r.backscatter_per_day.get(i))
                .map_or(0, |row| row.backscatter)
        };
        let busy: Vec<i64> = (0..r.backscatter_per_day.len() as i64)
            .map(|i| start + i)
            .filter(|&d| count(d) > 0)
            .collect();
        let end = start + r.backscatter_per_day.len() as i64 - 1;
        for row in days::rows(&busy, start, end) {
            match row {
                days::Row::Day(d) => {
                    let n = count(d);
                    let _ = writeln!(
                        t,
                        "{} |{:<BAR_WIDTH$}| {n}",
                        day_string(d),
                        bar(n, max, BAR_WIDTH),
                    );
                }
                days::Row::Gap { first, last } => {
                    let _ = writeln!(
                        t,
                        "{:<10} |{:<BAR_WIDTH$}| 0 on each of {} days, to {}",
                        "…",
                        "",
                        last - first + 1,
                        day_string(last)
                    );
                }
            }
        }
    }
    if !r.selected.is_empty() {
        let _ = writeln!(
            t,
            "\n{} ({}):",
            if r.apply { "Moved" } else { "Would move" },
            r.selected.len()
        );
        for m in &r.selected {
            let when = m.arrived.as_deref().map_or("(no date)".to_string(), |a| {
                a.get(..16).unwrap_or(a).replace('T', " ")
            });
            let _ = writeln!(
                t,
                "  {when:<16}  {:<17} {:<18} From: {}  Subject: {}\n      {}",
                m.verdict,
                m.kind.unwrap_or("-"),
                one_line(m.from.as_deref()),
                one_line(m.subject.as_deref()),
                one_line(Some(&m.place)),
            );
        }
    }
    t.push('\n');
    if r.apply {
        let _ = write!(
            t,
            "Moved {} of {} messages ({}) to {}",
            r.moved, r.to_move, r.moving, r.target
        );
        if r.already_moved > 0 {
            let _ = write!(
                t,
                "; {} were already there from an interrupted run",
                r.already_moved
            );
        }
        t.push_str(".\n");
    } else {
        let _ = writeln!(
            t,
            "Dry run: {} messages ({}) would be moved to {}; nothing was changed (use --apply).",
            r.to_move, r.moving, r.target
        );
    }
    if r.recovered > 0 {
        let _ = writeln!(
            t,
            "Finished an interrupted run: {} messages moved.",
            r.recovered
        );
    }
    if r.vanished > 0 {
        let _ = writeln!(
            t,
            "Note: {} messages disappeared while the scan ran (moved or deleted by the mail server); run again to pick up those that were only moved.",
            r.vanished
        );
    }
    for n in &r.notes {
        let _ = writeln!(t, "Note: {n}");
    }
    for e in &r.errors {
        let _ = writeln!(t, "Error: {e}");
    }
    if r.interrupted {
        t.push_str("Interrupted: run the same command again to go on.\n");
    }
    t
}
