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

/// Colours of the outcomes, shared by the bars and their legend.
const OUTCOME_COLOURS: [(&str, &str); 5] = [
    ("approved", "#2e7d32"),
    ("denied", "#c62828"),
    ("timed out", "#ef6c00"),
    ("cancelled", "#757575"),
    ("pending", "#1565c0"),
];

const CHART_W: f64 = 400.0;
const CHART_H: f64 = 220.0;
const PAD_L: f64 = 40.0;
const PAD_B: f64 = 40.0;
const PAD_T: f64 = 16.0;

/// Opens a chart: a scalable SVG (it fills its column on any screen) with
/// a title for screen readers.
fn svg_open(out: &mut String, id: &str, title: &str, height: f64) {
    let _ = write!(
        out,
        "<figure><figcaption>{t}</figcaption><svg id=\"{id}\" viewBox=\"0 0 {CHART_W} {height}\" role=\"img\" \
         aria-label=\"{t}\" style=\"width:100%;height:auto;max-width:{CHART_W}px\" \
         xmlns=\"http://www.w3.org/2000/svg\" font-family=\"system-ui,sans-serif\" font-size=\"12\">",
        t = esc(title)
    );
}

/// Vertical bars, stacked when a bar has several parts; `labels` under
/// the bars (every `label_every`th one).
fn bars(out: &mut String, labels: &[String], stacks: &[Vec<(u64, &str)>], label_every: usize) {
    let max = stacks.iter().map(|s| s.iter().map(|(v, _)| v).sum::<u64>()).max().unwrap_or(0).max(1);
    let plot_h = CHART_H - PAD_B - PAD_T;
    let slot = (CHART_W - PAD_L) / labels.len().max(1) as f64;
    let width = (slot * 0.8).max(1.0);
    let _ = write!(
        out,
        "<line x1=\"{PAD_L}\" y1=\"{y}\" x2=\"{CHART_W}\" y2=\"{y}\" stroke=\"#999\"/>\
         <text x=\"{x}\" y=\"{top}\" text-anchor=\"end\">{max}</text><text x=\"{x}\" y=\"{y}\" text-anchor=\"end\">0</text>",
        y = CHART_H - PAD_B,
        x = PAD_L - 6.0,
        top = PAD_T + 10.0
    );
    for (i, (label, stack)) in labels.iter().zip(stacks).enumerate() {
        let x = PAD_L + slot * i as f64 + (slot - width) / 2.0;
        let mut y = CHART_H - PAD_B;
        for (value, colour) in stack {
            let h = plot_h * (*value as f64) / (max as f64);
            if h > 0.0 {
                y -= h;
                let _ = write!(
                    out,
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{h:.1}\" fill=\"{colour}\"><title>{}: {value}</title></rect>",
                    esc(label)
                );
            }
        }
        let total: u64 = stack.iter().map(|(v, _)| v).sum();
        if stack.len() == 1 && total > 0 {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{total}</text>",
                x + width / 2.0,
                y - 4.0
            );
        }
        if i % label_every.max(1) == 0 {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x + width / 2.0,
                CHART_H - PAD_B + 18.0,
                esc(label)
            );
        }
    }
}

/// The four charts: requests per day by outcome, approval times,
/// durations per role, revocation lateness.
fn charts(report: &Report, out: &mut String) {
    let c = &report.charts;
    out.push_str("<section class=\"charts\">");
    svg_open(out, "chart-requests", "Requests per day, by outcome", CHART_H);
    let labels: Vec<String> = c.per_day.iter().map(|d| d.day.get(5..).unwrap_or(&d.day).to_owned()).collect();
    let stacks: Vec<Vec<(u64, &str)>> = c
        .per_day
        .iter()
        .map(|d| {
            let values = [d.approved, d.denied, d.timed_out, d.cancelled, d.pending];
            values.iter().zip(OUTCOME_COLOURS).map(|(v, (_, colour))| (*v, colour)).collect()
        })
        .collect();
    bars(out, &labels, &stacks, labels.len().div_ceil(5));
    out.push_str("</svg><p class=\"legend\">");
    for (name, colour) in OUTCOME_COLOURS {
        let _ = write!(out, "<span><i style=\"background:{colour}\"></i>{name}</span> ");
    }
    out.push_str("</p></figure>");

    for (id, title, buckets, colour) in [
        ("chart-approval", "Approval time (approved by people)", &c.approval_time, "#6a1b9a"),
        ("chart-lateness", "Revocation lateness", &c.lateness, "#00838f"),
    ] {
        svg_open(out, id, title, CHART_H);
        let labels: Vec<String> = buckets.iter().map(|b| b.label.clone()).collect();
        let stacks: Vec<Vec<(u64, &str)>> = buckets.iter().map(|b| vec![(b.count, colour)]).collect();
        bars(out, &labels, &stacks, 1);
        out.push_str("</svg></figure>");
    }

    // Durations per role: requested, granted and used medians, side by side.
    let row_h = 64.0;
    let height = PAD_T + row_h * report.roles.len().max(1) as f64;
    svg_open(out, "chart-durations", "Median duration per role: requested, granted, used", height);
    let longest = report
        .roles
        .iter()
        .flat_map(|f| [f.durations.requested.p50_ms, f.durations.granted.p50_ms, f.durations.used.p50_ms])
        .flatten()
        .max()
        .unwrap_or(1)
        .max(1);
    let bar_w = CHART_W - 160.0;
    for (i, f) in report.roles.iter().enumerate() {
        let top = PAD_T + row_h * i as f64;
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{:.1}\" font-weight=\"bold\">{}</text>",
            top + 12.0,
            esc(f.role.as_deref().unwrap_or(""))
        );
        let d = &f.durations;
        for (j, (name, value, colour)) in [
            ("requested", d.requested.p50_ms, "#90a4ae"),
            ("granted", d.granted.p50_ms, "#1565c0"),
            ("used", d.used.p50_ms, "#2e7d32"),
        ]
        .into_iter()
        .enumerate()
        {
            let y = top + 18.0 + 14.0 * j as f64;
            let w = bar_w * value.unwrap_or(0) as f64 / longest as f64;
            let _ = write!(
                out,
                "<text x=\"0\" y=\"{:.1}\" font-size=\"11\">{name}</text>\
                 <rect x=\"80\" y=\"{:.1}\" width=\"{w:.1}\" height=\"10\" fill=\"{colour}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
                y + 9.0,
                y,
                86.0 + w,
                y + 9.0,
                dur(value)
            );
        }
    }
    out.push_str("</svg></figure></section>");
}

/// The page's head and styles: one column on a phone, two on a laptop.
fn page_head(out: &mut String, heading: &str) {
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>jitbot access report</title><style>\
         body{{font-family:system-ui,sans-serif;margin:1rem auto;max-width:80rem;padding:0 1rem;color:#222}}\
         h1{{font-size:1.3rem}}\
         .charts{{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,30rem),1fr));gap:1rem}}\
         figure{{margin:0;border:1px solid #ddd;border-radius:6px;padding:.5rem}}\
         figcaption{{font-weight:bold;margin-bottom:.3rem}}\
         .legend span{{margin-right:.8rem;white-space:nowrap}}\
         .legend i{{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:middle}}\
         table{{border-collapse:collapse;margin:1rem 0;width:100%}}\
         th,td{{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}}\
         th{{background:#f3f3f3;width:10rem}}\
         form{{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end;margin:1rem 0}}\
         label{{display:flex;flex-direction:column;font-size:.9rem}}</style></head><body><h1>{}</h1>",
        esc(heading)
    );
}

/// The report as one static HTML page: charts drawn as inline SVG and
/// tables of the same figures (no scripts), for a file or an email.
pub fn html(report: &Report) -> String {
    page(report, None)
}

/// The page `/report` serves: [`html`] with a filter form for the period
/// and the role (a plain GET form: it works without JavaScript).
/// `filter` is what the form shows: the `since` as typed, and the roles
/// to choose from.
pub fn page(report: &Report, filter: Option<(&str, &[String])>) -> String {
    let mut out = String::new();
    page_head(&mut out, &heading(report));
    if let Some((since, roles)) = filter {
        let _ = write!(
            out,
            "<form method=\"get\" action=\"/report\"><label>Since (30d, 12h or a date)\
             <input name=\"since\" value=\"{}\"></label><label>Role<select name=\"role\"><option value=\"\">all roles</option>",
            esc(since)
        );
        for role in roles {
            let selected = if report.role_filter.as_deref() == Some(role) { " selected" } else { "" };
            let _ = write!(out, "<option{selected}>{}</option>", esc(role));
        }
        out.push_str("</select></label><button type=\"submit\">Show</button></form>");
    }
    charts(report, &mut out);
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
