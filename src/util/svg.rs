//! A per-day bar chart as a self-contained SVG file (no script, no external font or style):
//! one stacked bar a day, empty days left empty, so that gaps show.

use std::fmt::Write as _;

use super::dates::day_string;

/// One series of the chart: a value for each day, from the first day on.
pub struct Series<'a> {
    pub name: &'a str,
    /// A CSS colour.
    pub color: &'a str,
    pub values: Vec<usize>,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 40.0;

/// The chart of `series` (stacked in order, the first at the bottom) over the days from
/// `first_day` (days since 1970-01-01), titled `title`.
pub fn day_chart(title: &str, first_day: i64, series: &[Series<'_>]) -> String {
    let days = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let total = |i: usize| -> usize {
        series
            .iter()
            .map(|s| s.values.get(i).copied().unwrap_or(0))
            .sum()
    };
    let max = (0..days).map(total).max().unwrap_or(0);
    let step = nice_step(max);
    let top_value = max.div_ceil(step).max(1) * step;
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let slot = plot_w / days.max(1) as f64;
    let bar_w = (slot * 0.8).max(0.5);
    let y = |v: usize| TOP + plot_h - plot_h * v as f64 / top_value as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans, Verdana, sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, "<title>{}</title>", escape(title));
    let _ = writeln!(
        out,
        r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="20" font-size="14" font-weight="bold" fill="#212529">{}</text>"##,
        escape(title)
    );
    // The legend, with each series' total.
    let mut lx = LEFT;
    for s in series {
        let sum: usize = s.values.iter().sum();
        let label = format!("{} ({sum})", s.name);
        let _ = writeln!(
            out,
            r##"<rect x="{lx}" y="30" width="12" height="12" fill="{}"/><text x="{}" y="40" fill="#212529">{}</text>"##,
            s.color,
            lx + 16.0,
            escape(&label)
        );
        lx += 16.0 + 7.0 * label.chars().count() as f64 + 24.0;
    }
    // Horizontal grid lines and the counts they stand for.
    let mut v = 0;
    while v <= top_value {
        let gy = y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#dee2e6"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#495057">{v}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            gy + 4.0
        );
        v += step;
    }
    // The bars.
    for i in 0..days {
        let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
        let mut base = 0;
        for s in series {
            let n = s.values.get(i).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let (y1, y0) = (y(base + n), y(base));
            let _ = writeln!(
                out,
                r#"<rect x="{x:.2}" y="{y1:.2}" width="{bar_w:.2}" height="{:.2}" fill="{}"><title>{}: {n} {}</title></rect>"#,
                y0 - y1,
                s.color,
                day_string(first_day + i as i64),
                escape(s.name)
            );
            base += n;
        }
    }
    // The axis and a few dates under it.
    let axis = TOP + plot_h;
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{axis}" x2="{:.1}" y2="{axis}" stroke="#495057"/>"##,
        WIDTH - RIGHT
    );
    let every = days.div_ceil(6).max(1);
    for i in (0..days).step_by(every) {
        let x = LEFT + slot * (i as f64 + 0.5);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{axis}" x2="{x:.1}" y2="{:.1}" stroke="#495057"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#495057">{}</text>"##,
            axis + 4.0,
            axis + 18.0,
            day_string(first_day + i as i64)
        );
    }
    if days == 0 {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#495057">no decisions logged in this span</text>"##,
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
    }
    out.push_str("</svg>\n");
    out
}

/// A step of 1, 2 or 5 times a power of ten that cuts `max` into at most five parts.
fn nice_step(max: usize) -> usize {
    let mut unit = 1usize;
    loop {
        for m in [1, 2, 5] {
            let step = unit.saturating_mul(m);
            if max.div_ceil(step) <= 5 {
                return step;
            }
        }
        unit = unit.saturating_mul(10);
    }
}

/// Text made safe inside an SVG element or attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round_and_bars_stack() {
        assert_eq!(nice_step(0), 1);
        assert_eq!(nice_step(5), 1);
        assert_eq!(nice_step(7), 2);
        assert_eq!(nice_step(23), 5);
        assert_eq!(nice_step(480), 100);
        let svg = day_chart(
            "a <b>",
            0,
            &[
                Series {
                    name: "x",
                    color: "red",
                    values: vec![2, 0, 0, 1],
                },
                Series {
                    name: "y",
                    color: "green",
                    values: vec![1, 0, 0, 0],
                },
            ],
        );
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("a &lt;b&gt;"));
        // Three bars (two stacked on the first day), none on the empty days.
        assert_eq!(svg.matches("<rect x=").count() - 2, 3, "{svg}");
        assert!(svg.contains("<title>1970-01-01: 2 x</title>"));
        assert!(!svg.contains("1970-01-02: "));
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
