//! Renders an evaluation as a readable trace: the path the decision took.

use std::fmt::Write;

use crate::evidence::received::HopRole;
use crate::verdict::Evaluation;

/// The explain text for one evaluation.
pub fn render(eval: &Evaluation) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_trace(&mut out, eval);
    out
}

fn write_trace(out: &mut String, e: &Evaluation) -> std::fmt::Result {
    writeln!(out, "message")?;
    writeln!(
        out,
        "  subject:    {}",
        e.subject.as_deref().unwrap_or("(none)")
    )?;
    writeln!(
        out,
        "  from:       {}",
        e.from.as_deref().unwrap_or("(none)")
    )?;
    writeln!(
        out,
        "  message-id: {}",
        e.message_id.as_deref().unwrap_or("(none)")
    )?;
    let sender = match e.envelope.sender.as_deref() {
        Some("") => "<> (null sender)".to_string(),
        Some(s) => s.to_string(),
        None => "(unknown)".to_string(),
    };
    writeln!(
        out,
        "  envelope sender: {sender}{}",
        source(e.envelope.sender_source.as_deref())
    )?;
    writeln!(
        out,
        "  envelope recipient: {}{}",
        e.envelope.recipient.as_deref().unwrap_or("(unknown)"),
        source(e.envelope.recipient_source.as_deref())
    )?;
    for note in &e.notes {
        writeln!(out, "  note: {note}")?;
    }

    writeln!(out, "\n1. is it a bounce or an automatic reply?")?;
    writeln!(
        out,
        "  {} rules tried, {} matched:",
        e.rules_tried,
        e.rules.len()
    )?;
    for hit in &e.rules {
        let kind = hit
            .kind
            .map(|k| format!(" [{}]", k.as_str()))
            .unwrap_or_default();
        writeln!(
            out,
            "  {:+4}  {}{kind}: {} = {:?}",
            hit.score, hit.id, hit.field, hit.matched
        )?;
        if !hit.describe.is_empty() {
            writeln!(out, "        {}", hit.describe)?;
        }
    }
    let answer = match e.kind {
        Some(k) => format!("yes, kind {}", k.as_str()),
        None => "no".to_string(),
    };
    writeln!(
        out,
        "  score {} against threshold {}: {answer}",
        e.score, e.threshold
    )?;

    if e.kind.is_some() {
        writeln!(out, "\n2. did you send the original?")?;
        if let Some(own) = &e.own {
            writeln!(out, "  own domains:  {}", list(&own.domains))?;
            writeln!(
                out,
                "  message-id domains: {}",
                list(&own.message_id_domains)
            )?;
            writeln!(out, "  own hosts:    {}", list(&own.hosts))?;
            writeln!(out, "  own networks: {}", list(&own.networks))?;
            for note in &own.notes {
                writeln!(out, "  ({note})")?;
            }
        }
        match &e.original {
            None => writeln!(out, "  original: not found")?,
            Some(o) => {
                let orig = &o.original;
                writeln!(
                    out,
                    "  original: {}, in {}",
                    orig.form.as_str(),
                    orig.found_in
                )?;
                writeln!(
                    out,
                    "    message-id: {}",
                    orig.message_id.as_deref().unwrap_or("(none)")
                )?;
                writeln!(
                    out,
                    "    from:       {}",
                    orig.from.as_deref().unwrap_or("(none)")
                )?;
                writeln!(
                    out,
                    "    subject:    {}",
                    orig.subject.as_deref().unwrap_or("(none)")
                )?;
                if o.judged.is_empty() {
                    writeln!(out, "    received:   (none)")?;
                } else {
                    writeln!(out, "    bouncer:    {}", o.anchor.describe())?;
                }
                for (i, h) in o.judged.iter().enumerate() {
                    let role = match h.role {
                        HopRole::Foreign => "foreign",
                        HopRole::Entry => "entry",
                        HopRole::Own => "own",
                        HopRole::Untrusted => "untrusted",
                        HopRole::Ignored => "ignored: names no sender or receiver",
                    };
                    let from_own = match (&h.from.own_by, h.from.strong) {
                        (Some(w), true) => format!("from own ({w})"),
                        (Some(w), false) => format!("from own by name only ({w})"),
                        (None, _) if h.from.own_name_from_foreign_ip => {
                            "from a foreign address using an own name".into()
                        }
                        (None, _) => "from not own".into(),
                    };
                    let by = if h.by_own { "by own" } else { "by not own" };
                    writeln!(out, "    hop {} [{role}; {from_own}; {by}]", i + 1)?;
                    writeln!(out, "      {}", h.hop.raw)?;
                    if !h.link.is_empty() {
                        writeln!(out, "      {}", h.link)?;
                    }
                }
                for ref_id in orig.references.iter().skip(1) {
                    writeln!(out, "    also refers to: {ref_id}")?;
                }
            }
        }
        if !e.evidence.is_empty() {
            writeln!(out, "  evidence:")?;
            for ev in &e.evidence {
                writeln!(out, "  {:+4}  {}: {}", ev.points, ev.tag, ev.text)?;
            }
            writeln!(out, "  total {:+}", e.ownership)?;
        }
    }

    writeln!(out, "\nverdict: {}", e.verdict.as_str())?;
    for r in &e.reasons {
        writeln!(out, "  because {r}")?;
    }
    writeln!(out, "action: {}", e.action.as_str())?;
    Ok(())
}

fn source(s: Option<&str>) -> String {
    s.map(|s| format!(" (from {s})")).unwrap_or_default()
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}
