//! `backstop stats`: summarise the decision log written by `deliver` (verdicts per day, top bounce senders, the current wave).
//!
//! The log has one JSON [`Entry`] per delivered message; its `time` is UTC, so days are UTC
//! days. Lines that are not entries (a torn last line, say) are counted and skipped.
//!
//! **Days.** Every day from the first to the last day of the log is shown, days without
//! entries too (as zeros), so that a gap is seen; `--since DATE` or `--days N` starts the span
//! at that day and ends it today. The text folds a run of empty days into one line when the
//! span is long ([`days::MAX_FILLED_SPAN`] days or more); JSON, `--csv` and `--svg` give every day.
//!
//! **Top bounce senders** are the addresses in the `From` of every entry whose verdict is not
//! `clean` (the address between `<` and `>` when there is one, lower-cased). **Top forged
//! senders** are the `From` addresses of the returned originals of backscatter (the sender the
//! spammer wrote), and **top originating addresses** the addresses those originals were sent
//! from, as their bouncers recorded them ([`Entry::original_ip`]); logs of versions before
//! these fields lack both, and their entries are left out of these two lists.
//!
//! **The current wave.** Backscatter comes in waves: a spammer forges the address for two or
//! three days, then stops. Days are taken in order from the first to the last day of the log
//! (days without entries count 0 backscatter). A wave *starts* on a day whose backscatter
//! count is at least `--wave-min` (default 10) and at least [`WAVE_FACTOR`] times the median
//! count of the [`BASELINE_DAYS`] days before it (fewer at the start of the log; none counts
//! as a median of 0). That median is the wave's *baseline*; the wave goes on while each next
//! day stays at or above the same threshold, and ends before the first day that does not.
//! The report gives the latest wave: its first and last day, its backscatter and baseline, and
//! whether it is *ongoing* (it reaches the last day of the log). "The current wave started on"
//! is the first day of the latest wave when it is ongoing; otherwise there is no current wave.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::process::ExitCode;

use serde::Serialize;

use crate::cli::{ReportFormat, StatsArgs};
use crate::config::Config;
use crate::exit::Exit;
use crate::log::Entry;
use crate::run::print_report;
use crate::util::dates::{day_number, day_string};
use crate::util::days;
use crate::util::svg;
use crate::util::text::bar;

/// How many days before a wave its baseline median is taken over.
pub const BASELINE_DAYS: usize = 14;
/// How many times the baseline median a wave day must reach.
pub const WAVE_FACTOR: f64 = 3.0;
const BAR_WIDTH: usize = 30;

/// Counts of one day.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DayCounts {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    pub clean: usize,
    #[serde(rename = "legit-bounce")]
    pub legit_bounce: usize,
    pub backscatter: usize,
    #[serde(rename = "unverified-bounce")]
    pub unverified_bounce: usize,
    /// Entries with a verdict this version does not know.
    pub other: usize,
    pub total: usize,
}

impl DayCounts {
    fn add(&mut self, verdict: &str) {
        match verdict {
            "clean" => self.clean += 1,
            "legit-bounce" => self.legit_bounce += 1,
            "backscatter" => self.backscatter += 1,
            "unverified-bounce" => self.unverified_bounce += 1,
            _ => self.other += 1,
        }
        self.total += 1;
    }

    fn merge(&mut self, o: &DayCounts) {
        self.clean += o.clean;
        self.legit_bounce += o.legit_bounce;
        self.backscatter += o.backscatter;
        self.unverified_bounce += o.unverified_bounce;
        self.other += o.other;
        self.total += o.total;
    }
}

/// A sender of bounces and how many came from it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Sender {
    pub sender: String,
    pub count: usize,
}

/// A value of a top list and how often it was seen.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Counted {
    pub value: String,
    pub count: usize,
}

/// The `n` most frequent values, most frequent first (then in alphabetical order).
fn top_of(counts: BTreeMap<String, usize>, n: usize) -> Vec<Counted> {
    let mut v: Vec<Counted> = counts
        .into_iter()
        .map(|(value, count)| Counted { value, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    v.truncate(n);
    v
}

/// A run of days with a backscatter wave.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Wave {
    /// First day, `YYYY-MM-DD`.
    pub start: String,
    /// Last day.
    pub end: String,
    pub days: usize,
    pub backscatter: usize,
    /// Median backscatter per day over the days before the wave.
    pub baseline_median: f64,
    /// The count a day had to reach.
    pub threshold: f64,
    /// True when the wave reaches the last day of the log.
    pub ongoing: bool,
}

/// The whole summary.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub log: String,
    pub entries: usize,
    /// Lines that were not log entries.
    pub unreadable_lines: usize,
    /// Entries that record a config error (delivered unfiltered).
    pub config_errors: usize,
    /// Every day of the span, in order, days without entries included.
    pub days: Vec<DayCounts>,
    pub totals: DayCounts,
    pub top_senders: Vec<Sender>,
    /// The forged senders of backscatter (the From of the returned originals).
    pub top_forged_senders: Vec<Counted>,
    /// Where the originals of backscatter were sent from.
    pub top_original_ips: Vec<Counted>,
    /// The first day counted, when `--since` or `--days` chose it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The latest wave, ongoing or not.
    pub latest_wave: Option<Wave>,
    /// The first day of the latest wave when it is ongoing.
    pub current_wave_started: Option<String>,
}

/// Runs `backstop stats`.
pub fn run(args: &StatsArgs) -> ExitCode {
    // A LOGFILE given is read alone; the config's log (the default one unless it says
    // otherwise) with its rotated half, oldest first, and may not exist yet.
    let (path, rotated) = match &args.logfile {
        Some(p) => (p.clone(), None),
        None => match Config::load(args.config.as_deref()) {
            Ok(c) => match c.log {
                Some(p) => {
                    let old = crate::log::rotated(&p);
                    (p, Some(old))
                }
                None => {
                    say!(
                        "backstop: the log is off (log: off in the config): give a LOGFILE, or remove that line"
                    );
                    return ExitCode::from(Exit::Error);
                }
            },
            Err(e) => {
                say!("backstop: {e}");
                return ExitCode::from(Exit::Error);
            }
        },
    };
    let mut reader: Box<dyn std::io::Read> = Box::new(std::io::empty());
    if let Some(old) = &rotated
        && let Ok(f) = std::fs::File::open(old)
    {
        reader = Box::new(f);
    }
    match std::fs::File::open(&path) {
        Ok(f) => reader = Box::new(reader.chain(f)),
        Err(e) if rotated.is_some() && e.kind() == std::io::ErrorKind::NotFound => {
            say!(
                "backstop: no decisions logged yet: deliver writes one line per message to {}",
                path.display()
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            say!("backstop: cannot read {}: {e}", path.display());
            return ExitCode::from(Exit::Error);
        }
    }
    let today = days::today();
    let since = match days::since(args.since.as_deref(), args.days, today) {
        Ok(s) => s,
        Err(e) => {
            say!("backstop: {e}");
            return ExitCode::from(Exit::Error);
        }
    };
    let span = Span {
        since,
        today,
        top: args.top,
        wave_min: args.wave_min as usize,
    };
    let stats = match summarise(BufReader::new(reader), &path.display().to_string(), &span) {
        Ok(s) => s,
        Err(e) => {
            say!("backstop: cannot read {}: {e}", path.display());
            return ExitCode::from(Exit::Error);
        }
    };
    if let Some(svg) = &args.svg {
        let chart = render_svg(&stats);
        if let Err(e) = std::fs::write(svg, chart) {
            say!("backstop: cannot write {}: {e}", svg.display());
            return ExitCode::from(Exit::Error);
        }
    }
    let text = match args.format {
        _ if args.csv => render_csv(&stats),
        ReportFormat::Text => render_text(&stats),
        ReportFormat::Json => match serde_json::to_string_pretty(&stats) {
            Ok(j) => j + "\n",
            Err(e) => {
                say!("backstop: cannot write JSON: {e}");
                return ExitCode::from(Exit::Error);
            }
        },
    };
    match print_report(&text, args.format, "summary") {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say!("backstop: {e}");
            ExitCode::from(Exit::Error)
        }
    }
}

/// What a summary covers.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    /// The first day counted (days since 1970-01-01); the span then ends `today`.
    pub since: Option<i64>,
    pub today: i64,
    /// How long the top lists are.
    pub top: usize,
    /// The least backscatter in a day that can start a wave.
    pub wave_min: usize,
}

/// Reads a log and summarises it.
///
/// # Errors
///
/// Only when reading fails; lines that are not entries are counted, not errors.
pub fn summarise(reader: impl BufRead, name: &str, span: &Span) -> std::io::Result<Stats> {
    let (top, wave_min) = (span.top, span.wave_min);
    let mut days: BTreeMap<i64, DayCounts> = BTreeMap::new();
    let mut senders: BTreeMap<String, usize> = BTreeMap::new();
    let mut forged: BTreeMap<String, usize> = BTreeMap::new();
    let mut ips: BTreeMap<String, usize> = BTreeMap::new();
    let (mut entries, mut unreadable, mut config_errors) = (0, 0, 0);
    for line in reader.split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Some((entry, day)) = serde_json::from_slice::<Entry>(&line)
            .ok()
            .and_then(|e| day_number(&e.time).map(|d| (e, d)))
        else {
            unreadable += 1;
            continue;
        };
        // A date before 1970 or after tomorrow is no decision of this machine's (and would
        // stretch the span of days without bound): the line is skipped as unreadable.
        if day < 0 || day > span.today + 1 {
            unreadable += 1;
            continue;
        }
        if span.since.is_some_and(|since| day < since) {
            continue;
        }
        entries += 1;
        if entry.error.is_some() {
            config_errors += 1;
        }
        days.entry(day)
            .or_insert_with(|| DayCounts {
                date: day_string(day),
                ..DayCounts::default()
            })
            .add(&entry.verdict);
        if entry.verdict != "clean" {
            *senders
                .entry(sender_address(entry.from.as_deref()))
                .or_default() += 1;
        }
        if entry.verdict == "backscatter" {
            if entry.original_from.is_some() {
                *forged
                    .entry(sender_address(entry.original_from.as_deref()))
                    .or_default() += 1;
            }
            if let Some(ip) = entry.original_ip {
                *ips.entry(ip).or_default() += 1;
            }
        }
    }
    // Every day of the span, the empty ones too.
    let first = span.since.or_else(|| days.keys().next().copied());
    let last = match span.since {
        Some(_) => days
            .keys()
            .next_back()
            .copied()
            .map_or(span.today, |l| l.max(span.today)),
        None => days.keys().next_back().copied().unwrap_or(0),
    };
    if let Some(first) = first {
        for d in first..=last {
            days.entry(d).or_insert_with(|| DayCounts {
                date: day_string(d),
                ..DayCounts::default()
            });
        }
    }
    let mut totals = DayCounts {
        date: "total".into(),
        ..DayCounts::default()
    };
    for d in days.values() {
        totals.merge(d);
    }
    let mut top_senders: Vec<Sender> = senders
        .into_iter()
        .map(|(sender, count)| Sender { sender, count })
        .collect();
    top_senders.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.sender.cmp(&b.sender)));
    top_senders.truncate(top);
    let series = filled_series(&days);
    let latest_wave = latest_wave(&series, wave_min).map(|w| Wave {
        start: day_string(w.start),
        end: day_string(w.end),
        days: usize::try_from(w.end - w.start + 1).unwrap_or(0),
        backscatter: w.backscatter,
        baseline_median: w.baseline,
        threshold: w.threshold,
        ongoing: w.ongoing,
    });
    let current_wave_started = latest_wave
        .as_ref()
        .filter(|w| w.ongoing)
        .map(|w| w.start.clone());
    Ok(Stats {
        log: name.to_string(),
        entries,
        unreadable_lines: unreadable,
        config_errors,
        days: days.into_values().collect(),
        totals,
        top_senders,
        top_forged_senders: top_of(forged, top),
        top_original_ips: top_of(ips, top),
        since: span.since.map(day_string),
        latest_wave,
        current_wave_started,
    })
}

/// The address of a From header text, lower-cased; "(none)" when there is none.
fn sender_address(from: Option<&str>) -> String {
    let Some(from) = from.map(str::trim).filter(|f| !f.is_empty()) else {
        return "(none)".into();
    };
    let addr = match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => from.get(a + 1..b).unwrap_or(from),
        _ => from,
    };
    let addr = addr.trim();
    if addr.is_empty() {
        "(none)".into()
    } else {
        addr.to_lowercase()
    }
}

/// Backscatter per day from the first to the last day, days without entries as 0.
fn filled_series(days: &BTreeMap<i64, DayCounts>) -> Vec<(i64, usize)> {
    let (Some((&first, _)), Some((&last, _))) = (days.first_key_value(), days.last_key_value())
    else {
        return Vec::new();
    };
    (first..=last)
        .map(|d| (d, days.get(&d).map_or(0, |c| c.backscatter)))
        .collect()
}

/// A wave found in a series (day numbers).
#[derive(Debug, Clone, PartialEq)]
struct FoundWave {
    start: i64,
    end: i64,
    backscatter: usize,
    baseline: f64,
    threshold: f64,
    ongoing: bool,
}

/// The latest wave of a day series, as defined in the module comment.
fn latest_wave(series: &[(i64, usize)], wave_min: usize) -> Option<FoundWave> {
    let mut latest = None;
    let mut i = 0;
    while let Some(&(day, count)) = series.get(i) {
        let before = series
            .get(i.saturating_sub(BASELINE_DAYS)..i)
            .unwrap_or_default();
        let baseline = median(before.iter().map(|&(_, c)| c).collect());
        let threshold = (wave_min as f64).max(WAVE_FACTOR * baseline);
        if (count as f64) < threshold {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut total = count;
        while let Some(&(_, next)) = series.get(j + 1) {
            if (next as f64) < threshold {
                break;
            }
            total += next;
            j += 1;
        }
        let end = series.get(j).map_or(day, |&(d, _)| d);
        latest = Some(FoundWave {
            start: day,
            end,
            backscatter: total,
            baseline,
            threshold,
            ongoing: j + 1 == series.len(),
        });
        i = j + 1;
    }
    latest
}

fn median(mut v: Vec<usize>) -> f64 {
    v.sort_unstable();
    let n = v.len();
    match (n.checked_sub(1).map(|i| i / 2), n / 2) {
        (None, _) => 0.0,
        (Some(lo), hi) if n.is_multiple_of(2) => {
            (v.get(lo).copied().unwrap_or(0) + v.get(hi).copied().unwrap_or(0)) as f64 / 2.0
        }
        (Some(mid), _) => v.get(mid).copied().unwrap_or(0) as f64,
    }
}

fn render_text(s: &Stats) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Decision log {}: {} entries over {} days",
        s.log,
        s.entries,
        s.days.len()
    );
    if s.unreadable_lines > 0 {
        let _ = writeln!(
            t,
            "({} lines were not log entries and were skipped)",
            s.unreadable_lines
        );
    }
    if s.config_errors > 0 {
        let _ = writeln!(
            t,
            "({} messages were delivered unfiltered because of a config error)",
            s.config_errors
        );
    }
    let max = s.days.iter().map(|d| d.backscatter).max().unwrap_or(0);
    let _ = writeln!(
        t,
        "\n{:<10} {:>8} {:>8} {:>11} {:>10} {:>8}  backscatter",
        "day", "clean", "legit", "backscatter", "unverified", "total"
    );
    let row = |t: &mut String, d: &DayCounts, chart: &str| {
        let line = format!(
            "{:<10} {:>8} {:>8} {:>11} {:>10} {:>8}  {chart}",
            d.date, d.clean, d.legit_bounce, d.backscatter, d.unverified_bounce, d.total
        );
        t.push_str(line.trim_end());
        t.push('\n');
    };
    let start = s
        .days
        .first()
        .and_then(|d| day_number(&d.date))
        .unwrap_or(0);
    let busy: Vec<i64> = s
        .days
        .iter()
        .enumerate()
        .filter(|(_, d)| d.total > 0)
        .map(|(i, _)| start + i as i64)
        .collect();
    let end = start + s.days.len() as i64 - 1;
    for r in days::rows(&busy, start, end) {
        match r {
            days::Row::Day(d) => {
                if let Some(c) = usize::try_from(d - start).ok().and_then(|i| s.days.get(i)) {
                    row(&mut t, c, &bar(c.backscatter, max, BAR_WIDTH));
                }
            }
            days::Row::Gap { first, last } => {
                let _ = writeln!(
                    t,
                    "{:<10} {:>8} {:>8} {:>11} {:>10} {:>8}  ({} days with nothing, to {})",
                    "…",
                    0,
                    0,
                    0,
                    0,
                    0,
                    last - first + 1,
                    day_string(last)
                );
            }
        }
    }
    row(&mut t, &s.totals, "");
    if s.since.is_none() && s.days.len() as i64 > days::MAX_FILLED_SPAN {
        t.push_str("(A long span: --days N or --since DATE shows a shorter one, day by day.)\n");
    }
    if s.totals.other > 0 {
        let _ = writeln!(
            t,
            "({} entries have a verdict this version does not know)",
            s.totals.other
        );
    }
    if !s.top_senders.is_empty() {
        let _ = writeln!(t, "\nTop bounce senders (From of non-clean messages):");
        for snd in &s.top_senders {
            let _ = writeln!(t, "{:>8}  {}", snd.count, one_line(&snd.sender));
        }
    }
    for (list, title) in [
        (
            &s.top_forged_senders,
            "Top forged senders (From of the originals of backscatter):",
        ),
        (
            &s.top_original_ips,
            "Top originating addresses (where those originals were sent from):",
        ),
    ] {
        if !list.is_empty() {
            let _ = writeln!(t, "\n{title}");
            for c in list {
                let _ = writeln!(t, "{:>8}  {}", c.count, one_line(&c.value));
            }
        }
    }
    t.push('\n');
    match &s.latest_wave {
        Some(w) if w.ongoing => {
            let _ = writeln!(
                t,
                "Current backscatter wave: started {} ({} days, {} backscatter; the {} days before had a median of {}/day).",
                w.start, w.days, w.backscatter, BASELINE_DAYS, w.baseline_median
            );
        }
        Some(w) => {
            let _ = writeln!(
                t,
                "No current backscatter wave; the last one ran from {} to {} ({} backscatter).",
                w.start, w.end, w.backscatter
            );
        }
        None => t.push_str("No backscatter wave in this log.\n"),
    }
    t
}

/// A value from the log on one line: its line ends shown as `\n` (every other control
/// character is escaped when the report is printed).
fn one_line(text: &str) -> String {
    text.replace('\r', "\\r").replace('\n', "\\n")
}

/// The days as CSV: a header line, then one line per day of the span (RFC 4180; no field
/// needs quoting).
fn render_csv(s: &Stats) -> String {
    let mut t = String::from("date,clean,legit-bounce,backscatter,unverified-bounce,other,total\n");
    for d in &s.days {
        let _ = writeln!(
            t,
            "{},{},{},{},{},{},{}",
            d.date, d.clean, d.legit_bounce, d.backscatter, d.unverified_bounce, d.other, d.total
        );
    }
    t
}

/// The per-day chart of backscatter and legitimate bounces, as SVG.
pub fn render_svg(s: &Stats) -> String {
    let start = s
        .days
        .first()
        .and_then(|d| day_number(&d.date))
        .unwrap_or(0);
    let series = [
        svg::Series {
            name: "backscatter",
            color: "#d9480f",
            values: s.days.iter().map(|d| d.backscatter).collect(),
        },
        svg::Series {
            name: "legitimate bounces",
            color: "#2b8a3e",
            values: s.days.iter().map(|d| d.legit_bounce).collect(),
        },
    ];
    svg::day_chart(
        "Bounces per day (UTC), from backstop's decision log",
        start,
        &series,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(counts: &[usize]) -> Vec<(i64, usize)> {
        counts
            .iter()
            .enumerate()
            .map(|(i, &c)| (i as i64, c))
            .collect()
    }

    #[test]
    fn waves_start_well_above_the_baseline() {
        // Quiet, then a three-day wave that is still going.
        let w = latest_wave(&series(&[1, 0, 2, 1, 1, 40, 300, 120]), 10).unwrap();
        assert_eq!(
            (w.start, w.end, w.backscatter, w.ongoing),
            (5, 7, 460, true)
        );
        assert_eq!(w.baseline, 1.0);
        // The wave ended: the latest one is reported, not ongoing.
        let w = latest_wave(&series(&[0, 50, 60, 0, 1, 2]), 10).unwrap();
        assert_eq!((w.start, w.end, w.ongoing), (1, 2, false));
        // A log that starts high starts with a wave (no days before it to compare with), and
        // a steady level then starts no new one: the one wave runs to the end.
        let w = latest_wave(&series(&[30; 20]), 10).unwrap();
        assert_eq!(
            (w.start, w.end, w.backscatter, w.ongoing),
            (0, 19, 600, true)
        );
        assert_eq!(w.baseline, 0.0);
        // A level that rises to less than WAVE_FACTOR times its baseline is no wave, however
        // long it lasts; a small bump is none either.
        let mut steady = vec![5; 14];
        steady.extend([12; 6]);
        assert_eq!(latest_wave(&series(&steady), 10), None);
        assert_eq!(latest_wave(&series(&[0, 1, 0, 5, 2]), 10), None);
        assert_eq!(latest_wave(&[], 10), None);
        // Two waves: the latest counts.
        let w = latest_wave(&series(&[0, 20, 0, 0, 0, 0, 0, 30, 40]), 10).unwrap();
        assert_eq!((w.start, w.end), (7, 8));
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3, 1, 2]), 2.0);
        assert_eq!(median(vec![4, 1, 2, 3]), 2.5);
    }

    #[test]
    fn sender_addresses() {
        assert_eq!(
            sender_address(Some("Mail Delivery <MAILER-DAEMON@X.org>")),
            "mailer-daemon@x.org"
        );
        assert_eq!(sender_address(Some("postmaster@y.org")), "postmaster@y.org");
        assert_eq!(sender_address(None), "(none)");
        assert_eq!(sender_address(Some("<>")), "(none)");
    }

    #[test]
    fn summary_counts_and_skips_bad_lines() {
        let line = |time: &str, verdict: &str, from: &str| {
            format!(
                r#"{{"time":"{time}","verdict":"{verdict}","kind":null,"action":"inbox","message_id":null,"from":"{from}","subject":null,"sender":null,"stored":null}}"#
            )
        };
        let log = [
            line("2026-11-25T10:00:00Z", "clean", "a@x"),
            line("2026-11-26T10:00:00Z", "backscatter", "M <d@y>"),
            "not json".to_string(),
            line("2026-11-26T11:00:00Z", "backscatter", "d@y"),
            line("2026-11-26T12:00:00Z", "legit-bounce", "e@z"),
        ]
        .join("\n");
        let span = |since| Span {
            since,
            today: day_number("2026-12-01").unwrap(),
            top: 10,
            wave_min: 2,
        };
        let s = summarise(log.as_bytes(), "log", &span(None)).unwrap();
        assert_eq!((s.entries, s.unreadable_lines), (4, 1));
        assert_eq!(s.days.len(), 2);
        assert_eq!(
            (
                s.days[1].backscatter,
                s.days[1].legit_bounce,
                s.days[1].total
            ),
            (2, 1, 3)
        );
        assert_eq!(
            s.top_senders,
            vec![
                Sender {
                    sender: "d@y".into(),
                    count: 2
                },
                Sender {
                    sender: "e@z".into(),
                    count: 1
                }
            ]
        );
        assert_eq!(s.current_wave_started.as_deref(), Some("2026-11-26"));
    }

    #[test]
    fn gaps_since_csv_and_the_originals_top_lists() {
        let old = |time: &str, verdict: &str| {
            format!(
                r#"{{"time":"{time}","verdict":"{verdict}","kind":null,"action":"inbox","message_id":null,"from":"MAILER-DAEMON@b.example","subject":null,"sender":null,"stored":null}}"#
            )
        };
        let new = |time: &str, forged: &str, ip: &str| {
            format!(
                r#"{{"time":"{time}","verdict":"backscatter","kind":"dsn","action":"folder","message_id":null,"from":"MAILER-DAEMON@b.example","subject":null,"sender":"","stored":null,"original_from":"Someone <{forged}>","original_ip":"{ip}"}}"#
            )
        };
        // An old entry (no original fields), a six-day gap, new ones; one far-future line.
        let log = [
            old("2026-11-01T10:00:00Z", "backscatter"),
            new("2026-11-08T10:00:00Z", "Ceo@Own.example", "192.0.2.7"),
            new("2026-11-08T11:00:00Z", "ceo@own.example", "192.0.2.7"),
            new("2026-11-09T11:00:00Z", "x@own.example", "198.51.100.1"),
            old("2026-11-09T12:00:00Z", "legit-bounce"),
            old("9999-01-01T00:00:00Z", "clean"),
        ]
        .join("\n");
        let today = day_number("2026-11-12").unwrap();
        let span = |since| Span {
            since,
            today,
            top: 10,
            wave_min: 10,
        };
        let s = summarise(log.as_bytes(), "log", &span(None)).unwrap();
        assert_eq!((s.entries, s.unreadable_lines), (5, 1));
        // 1 to 9 November, every day: the six empty ones too.
        assert_eq!(s.days.len(), 9);
        assert_eq!(s.days.iter().filter(|d| d.total == 0).count(), 6);
        assert_eq!(
            s.top_forged_senders,
            vec![
                Counted {
                    value: "ceo@own.example".into(),
                    count: 2
                },
                Counted {
                    value: "x@own.example".into(),
                    count: 1
                }
            ]
        );
        assert_eq!(s.top_original_ips[0].value, "192.0.2.7");
        assert_eq!(s.top_original_ips[0].count, 2);
        let csv = render_csv(&s);
        assert_eq!(csv.lines().count(), 10);
        assert!(csv.contains("\n2026-11-05,0,0,0,0,0,0\n"), "{csv}");
        assert!(csv.contains("\n2026-11-09,0,1,1,0,0,2\n"), "{csv}");
        let text = render_text(&s);
        assert!(
            text.contains("2026-11-05"),
            "a short span shows every day: {text}"
        );
        // --since: from that day to today, the empty days after the last entry too.
        let s = summarise(
            log.as_bytes(),
            "log",
            &span(Some(day_number("2026-11-08").unwrap())),
        )
        .unwrap();
        assert_eq!(s.entries, 4);
        assert_eq!(s.days.first().unwrap().date, "2026-11-08");
        assert_eq!(s.days.last().unwrap().date, "2026-11-12");
        // A long span folds each empty run into one line that says how long it is.
        let long = [
            old("2025-01-01T00:00:00Z", "backscatter"),
            old("2026-11-01T00:00:00Z", "backscatter"),
        ]
        .join("\n");
        let s = summarise(long.as_bytes(), "log", &span(None)).unwrap();
        let text = render_text(&s);
        assert!(
            text.contains("(668 days with nothing, to 2026-10-31)"),
            "{text}"
        );
        assert!(text.lines().count() < 20, "{text}");
    }
}
