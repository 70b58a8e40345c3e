//! The report as text (for a terminal) and as a static HTML page of tables
//! (for a browser or an email), both rendered from the one [`Report`], so
//! they cannot show other numbers than the JSON.

use std::fmt::Write;

use super::recommend::human;
use super::{Figures, Lateness, Report, Spread};

/// A duration figure, or a dash when there was nothing to measure.
fn dur(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_owned(), human)
}

fn spread(s: &Spread) -> String {
    format!("p50 {}, p90 {} (n={})", dur(s.p50_ms), dur(s.p90_ms), s.count)
}

fn lateness(l: &Lateness) -> String {
    format!("p50 {}, p99 {}, max {} (n={})", dur(l.p50_ms), dur(l.p99_ms), dur(l.max_ms), l.count)
}

fn title(f: &Figures) -> String {
    match &f.role {
        Some(role) => format!("Role {role}"),
        None => "All roles".to_owned(),
    }
}

/// The lines of one block of figures, label and value, shared by the text
/// and the HTML forms.
fn rows(f: &Figures) -> Vec<(&'static str, String)> {
    let approvers = if f.approvers.is_empty() {
        "-".to_owned()
    } else {
        f.approvers.iter().map(|a| format!("{} {}", a.approver, a.approvals)).collect::<Vec<_>>().join(", ")
    };
    let d = &f.durations;
    let r = &f.revocations;
    vec![
        (
            "requests",
            format!(
                "{}: approved {} (by people {}), denied {}, timed out {}, cancelled {}, pending {}",
                f.requests, f.approved, f.approved_by_people, f.denied, f.timed_out, f.cancelled, f.pending
            ),
        ),
        ("auto-approved", format!("{} ({}%)", f.auto_approved, f.auto_approved_percent)),
        ("break-glass", format!("{} ({} unreviewed)", f.break_glass, f.break_glass_unreviewed)),
        ("approval time", spread(&f.approval_time)),
        ("approvers", approvers),
        ("requested", spread(&d.requested)),
        ("granted", spread(&d.granted)),
        ("used", format!("{}; {} of {} ended early", spread(&d.used), d.ended_early, d.finished)),
        ("extensions", format!("{} asked, {} applied", f.extensions.asked, f.extensions.applied)),
        (
            "revocations",
            format!(
                "{} revoked; lateness {}; {} retried ({} failed attempts), {} failing now",
                r.revoked,
                lateness(&r.lateness),
                r.retried,
                r.failed_attempts,
                r.failing_now
            ),
        ),
    ]
}

fn heading(report: &Report) -> String {
    format!(
        "Access report {} to {} ({}), {} working days",
        report.since,
        report.until,
        report.role_filter.as_deref().map_or_else(|| "all roles".to_owned(), |r| format!("role {r}")),
        report.working_days
    )
}

/// The report for a terminal.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", heading(report));
    for f in std::iter::once(&report.overall).chain(&report.roles) {
        let _ = writeln!(out, "\n{}", title(f));
        for (label, value) in rows(f) {
            let _ = writeln!(out, "  {label:<14} {value}");
        }
    }
    let _ = writeln!(out, "\nPeople (working days with a live grant)");
    if report.people.is_empty() {
        let _ = writeln!(out, "  -");
    }
    for h in &report.people {
        let _ = writeln!(out, "  {} {}: {} of {} days ({}%)", h.person, h.role, h.days, h.working_days, h.percent);
    }
    let _ = writeln!(out, "\nRecommendations");
    if report.recommendations.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for (i, r) in report.recommendations.iter().enumerate() {
        let kind = serde_json::to_value(r.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let _ = writeln!(out, "  {}. [{kind}] {}", i + 1, r.advice);
    }
    out
}

/// The weekly digest's figure lines and its top three recommendations.
pub fn digest(report: &Report) -> (Vec<String>, Vec<String>) {
    let f = &report.overall;
    let r = &f.revocations;
    let lines = vec![
        format!(
            "{} requests: {} approved ({} auto-approved, {} break-glass, {} unreviewed), {} denied, {} timed out, {} pending",
            f.requests,
            f.approved,
            f.auto_approved,
            f.break_glass,
            f.break_glass_unreviewed,
            f.denied,
            f.timed_out,
            f.pending
        ),
        format!("approval time p50 {}, p90 {}", dur(f.approval_time.p50_ms), dur(f.approval_time.p90_ms)),
        format!(
            "revocations: {} revoked, lateness p99 {}, {} needed retries, {} failing now",
            r.revoked,
            dur(r.lateness.p99_ms),
            r.retried,
            r.failing_now
        ),
    ];
    let recommendations = report.recommendations.iter().take(3).map(|r| r.advice.clone()).collect();
    (lines, recommendations)
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The report as one static HTML page of tables (no scripts, no charts).
pub fn html(report: &Report) -> String {
    let mut out = String::new();
    let head = esc(&heading(report));
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>jitbot access report</title><style>\
         body{{font-family:system-ui,sans-serif;margin:1rem;max-width:60rem}}\
         table{{border-collapse:collapse;margin-bottom:1.5rem;width:100%}}\
         th,td{{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}}\
         th{{background:#f3f3f3;width:12rem}}</style></head><body><h1>{head}</h1>"
    );
    for f in std::iter::once(&report.overall).chain(&report.roles) {
        let _ = write!(out, "<h2>{}</h2><table>", esc(&title(f)));
        for (label, value) in rows(f) {
            let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(label), esc(&value));
        }
        out.push_str("</table>");
    }
    out.push_str("<h2>People (working days with a live grant)</h2><table>");
    out.push_str("<tr><th>person</th><th>role</th><th>days</th><th>share</th></tr>");
    for h in &report.people {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{} of {}</td><td>{}%</td></tr>",
            esc(&h.person),
            esc(&h.role),
            h.days,
            h.working_days,
            h.percent
        );
    }
    out.push_str("</table><h2>Recommendations</h2><ol>");
    for r in &report.recommendations {
        let _ = write!(out, "<li>{}</li>", esc(&r.advice));
    }
    out.push_str("</ol></body></html>\n");
    out
}

/// One CSV field: quoted when it holds a separator, a quote or a line
/// break; a leading `=`, `+`, `-` or `@` is prefixed with `'` so that a
/// spreadsheet shows it instead of running it as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

/// The requests behind a report as CSV (RFC 4180, a header line first),
/// one row per request or extension, for spreadsheets. Instants are RFC
/// 3339 UTC; the duration is the approved one, extensions included.
pub fn requests_csv(requests: &[super::RequestFact]) -> String {
    let at = |t: Option<i64>| t.map(|t| crate::domain::Timestamp::from_millis(t).to_string()).unwrap_or_default();
    let mut out = String::from(
        "id,role,requester,state,created_at,decided_at,granted_at,expires_at,ended_at,duration_minutes,\
         auto_approved,break_glass,review_pending,extends\r\n",
    );
    for r in requests {
        let fields = [
            r.id.to_string(),
            csv_field(&r.role),
            csv_field(&r.requester),
            r.state.as_str().to_owned(),
            at(Some(r.created_at)),
            at(r.decided_at),
            at(r.granted_at),
            at(r.expires_at),
            at(r.ended_at),
            (r.duration_ms / 60_000).to_string(),
            r.auto_approved.to_string(),
            r.break_glass.to_string(),
            r.review_required.to_string(),
            r.extends.map(|e| e.to_string()).unwrap_or_default(),
        ];
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("alice@example.com"), "alice@example.com");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
    }
}
