//! What people see of many requests at once: `/jit list` (mine: pending,
//! active, recent), `/jit pending` (waiting for my decision, with buttons)
//! and the App Home tab. Templates like [`super::views`]: Block Kit plus a
//! plain-text fallback, within Slack's limits however many requests there
//! are.

use serde_json::{Value, json};

use super::views::{Message, escape, fit, slack_date, truncate};
use crate::domain::{AccessDuration, AccessRequest, Approval, RequestState, Timestamp};

/// At most this many requests are listed per section; the rest are counted.
pub const SECTION_LIMIT: usize = 15;

/// "25m left", "1h 5m left", "less than a minute left".
pub fn time_left(now: Timestamp, until: Timestamp) -> String {
    let minutes = now.until(until).as_secs() / 60;
    if minutes == 0 {
        return "less than a minute left".to_owned();
    }
    let (h, m) = (minutes / 60, minutes % 60);
    match (h, m) {
        (0, m) => format!("{m}m left"),
        (h, 0) => format!("{h}h left"),
        (h, m) => format!("{h}h {m}m left"),
    }
}

fn approvals_so_far(r: &AccessRequest, approvals: &[Approval]) -> String {
    let n = approvals.iter().filter(|a| a.decision == crate::domain::Decision::Approve).count();
    format!("{n} of {} approvals", r.approvals_required)
}

/// One line about one of my requests.
fn my_line(r: &AccessRequest, now: Timestamp) -> String {
    let what = match r.extends {
        Some(parent) => format!("#{} extension of #{} `{}` (+{})", r.id.get(), parent.get(), r.role, r.duration),
        None => format!("#{} `{}` ({})", r.id.get(), r.role, r.duration),
    };
    let state = match (r.state, r.expires_at, r.ended_at.or(r.decided_at)) {
        (RequestState::Active | RequestState::Granting, Some(t), _) => {
            format!("{} until {} ({})", r.state.describe(), slack_date(t), time_left(now, t))
        }
        (RequestState::Pending, _, _) => match r.decide_by {
            Some(t) => format!("waiting for approval · times out {}", slack_date(t)),
            None => "waiting for approval".to_owned(),
        },
        (state, _, Some(t)) if state.is_terminal() => format!("{} {}", state.describe(), slack_date(t)),
        (state, _, _) => state.describe().to_owned(),
    };
    format!("• {what}: {state}")
}

fn section(title: &str, requests: &[AccessRequest], now: Timestamp) -> Option<String> {
    if requests.is_empty() {
        return None;
    }
    let mut lines: Vec<String> = requests.iter().take(SECTION_LIMIT).map(|r| my_line(r, now)).collect();
    if requests.len() > SECTION_LIMIT {
        lines.push(format!("…and {} more", requests.len() - SECTION_LIMIT));
    }
    Some(format!("*{title}*\n{}", lines.join("\n")))
}

/// `/jit list`: my pending requests, my access, my recent requests.
pub struct MyRequests<'a> {
    /// Open requests (pending, or holding access).
    pub open: &'a [AccessRequest],
    /// Recently ended ones, newest first.
    pub recent: &'a [AccessRequest],
    /// The requests waiting for my decision.
    pub waiting: &'a [AccessRequest],
    /// Now, for "time left".
    pub now: Timestamp,
}

impl MyRequests<'_> {
    /// Renders the list as one mrkdwn text (it has no buttons).
    pub fn render(&self) -> Message {
        let (pending, live): (Vec<AccessRequest>, Vec<AccessRequest>) =
            self.open.iter().cloned().partition(|r| r.state == RequestState::Pending);
        let parts: Vec<String> = [
            section("Pending", &pending, self.now),
            section("Active", &live, self.now),
            section("Recent", self.recent, self.now),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut text = if parts.is_empty() { "You have no open requests.".to_owned() } else { parts.join("\n\n") };
        if self.open.is_empty() && !self.recent.is_empty() {
            text = format!("You have no open requests.\n\n{text}");
        }
        if !self.waiting.is_empty() {
            let lines: Vec<String> = self
                .waiting
                .iter()
                .take(SECTION_LIMIT)
                .map(|r| format!("• #{} <@{}> `{}` for {}", r.id.get(), r.requester.user_id(), r.role, r.duration))
                .collect();
            text.push_str(&format!(
                "\n\n*Waiting for your approval* (`/jit pending` shows them with buttons)\n{}",
                lines.join("\n")
            ));
            if self.waiting.len() > SECTION_LIMIT {
                text.push_str(&format!("\n…and {} more", self.waiting.len() - SECTION_LIMIT));
            }
        }
        Message { text: truncate(&text, 39_000), blocks: Vec::new() }
    }
}

/// The blocks for one request waiting for a decision: who asks what and
/// why, and Approve / Deny.
pub fn decision_blocks(r: &AccessRequest, approvals: &[Approval]) -> Vec<Value> {
    let id = r.id.get();
    let what = match r.extends {
        Some(parent) => format!("to extend `{}` (#{}) by {}", r.role, parent.get(), r.duration),
        None => format!("`{}` for {}", r.role, r.duration),
    };
    let deadline = r.decide_by.map(|t| format!(" · times out {}", slack_date(t))).unwrap_or_default();
    vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": fit(&format!(
            "*#{id}* <@{}> asks for {what} ({}){deadline}\n>{}",
            r.requester.user_id(),
            approvals_so_far(r, approvals),
            escape(&truncate(&r.reason, 500)).replace('\n', "\n>")
        ), 3000)}}),
        json!({"type": "actions", "block_id": format!("decide:{id}"), "elements": [
            {"type": "button", "action_id": "approve", "value": id.to_string(), "style": "primary",
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": "deny", "value": id.to_string(), "style": "danger",
             "text": {"type": "plain_text", "text": "Deny"}},
        ]}),
    ]
}

/// `/jit pending`: the requests waiting for my decision, with buttons.
pub struct AwaitingMe<'a> {
    /// The requests with their decisions so far, oldest first.
    pub requests: &'a [(AccessRequest, Vec<Approval>)],
}

impl AwaitingMe<'_> {
    /// Renders the message (at most [`SECTION_LIMIT`] requests with buttons).
    pub fn render(&self) -> Message {
        if self.requests.is_empty() {
            return Message { text: "Nothing waits for your approval.".to_owned(), blocks: Vec::new() };
        }
        let n = self.requests.len();
        let text = format!(
            "{n} request{} wait{} for your approval.",
            if n == 1 { "" } else { "s" },
            if n == 1 { "s" } else { "" }
        );
        let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*{text}*")}})];
        for (r, approvals) in self.requests.iter().take(SECTION_LIMIT) {
            blocks.extend(decision_blocks(r, approvals));
        }
        if n > SECTION_LIMIT {
            blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
                "text": format!("…and {} more: decide these first, or use the cards in the approvals channels.", n - SECTION_LIMIT)}]}));
        }
        Message { text, blocks }
    }
}

/// At most this many requests per section of the App Home tab (a home
/// view holds at most 100 blocks).
pub const HOME_SECTION_LIMIT: usize = 10;

/// My App Home tab: my access with time left (extend it, or end it), my
/// pending requests (cancel them), and what waits for my approval.
pub struct HomeView<'a> {
    /// Now, for "time left".
    pub now: Timestamp,
    /// Whether the person has an identity link at all.
    pub linked: bool,
    /// My live access, with the extensions each role allows.
    pub active: &'a [(AccessRequest, Vec<AccessDuration>)],
    /// My pending requests (and extensions), with their decisions so far.
    pub pending: &'a [(AccessRequest, Vec<Approval>)],
    /// What waits for my decision.
    pub awaiting: &'a [(AccessRequest, Vec<Approval>)],
}

fn header(text: &str) -> Value {
    json!({"type": "header", "text": {"type": "plain_text", "text": text}})
}

fn mrkdwn(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": fit(text, 3000)}})
}

fn more(n: usize, what: &str) -> Option<Value> {
    (n > HOME_SECTION_LIMIT).then(|| {
        json!({"type": "context", "elements": [{"type": "mrkdwn",
            "text": format!("…and {} more {what}: `/jit list` and `/jit pending` show them all.", n - HOME_SECTION_LIMIT)}]})
    })
}

impl HomeView<'_> {
    /// Renders the home view.
    pub fn render(&self) -> Value {
        let mut blocks = vec![
            header("Your access"),
            json!({"type": "actions", "elements": [{"type": "button", "action_id": "request_form", "style": "primary",
                "text": {"type": "plain_text", "text": "Request access"}}]}),
        ];
        if !self.linked {
            blocks.push(mrkdwn(
                "You have not linked your Slack account to your company identity yet: run `/jit link` (or ask a jitbot administrator).",
            ));
        }
        if self.active.is_empty() {
            blocks.push(mrkdwn("No access right now."));
        }
        for (r, choices) in self.active.iter().take(HOME_SECTION_LIMIT) {
            let id = r.id.get();
            let until = r
                .expires_at
                .map(|t| format!(" until {} ({})", slack_date(t), time_left(self.now, t)))
                .unwrap_or_default();
            blocks.push(mrkdwn(&format!(":unlock: `{}` (request #{id}): {}{until}", r.role, r.state.describe())));
            if matches!(r.state, RequestState::Active | RequestState::Granting) {
                let mut elements = Vec::new();
                let options: Vec<Value> = choices
                    .iter()
                    .take(100)
                    .map(|d| json!({"text": {"type": "plain_text", "text": format!("+{d}")}, "value": format!("{id}:{}", d.get().as_secs())}))
                    .collect();
                if !options.is_empty() {
                    elements.push(json!({"type": "static_select", "action_id": "extend",
                        "placeholder": {"type": "plain_text", "text": "Extend by…"}, "options": options}));
                }
                elements.push(json!({"type": "button", "action_id": "done", "value": id.to_string(), "style": "danger",
                    "text": {"type": "plain_text", "text": "I'm done"},
                    "confirm": {
                        "title": {"type": "plain_text", "text": "End your access now?"},
                        "text": {"type": "plain_text", "text": format!("Your {} access is revoked at once.", truncate(r.role.as_str(), 200))},
                        "confirm": {"type": "plain_text", "text": "End it now"},
                        "deny": {"type": "plain_text", "text": "Keep it"},
                        "style": "danger"
                    }}));
                blocks.push(json!({"type": "actions", "block_id": format!("live:{id}"), "elements": elements}));
            }
        }
        blocks.extend(more(self.active.len(), "grants"));

        blocks.push(json!({"type": "divider"}));
        blocks.push(header("Your pending requests"));
        if self.pending.is_empty() {
            blocks.push(mrkdwn("None."));
        }
        for (r, approvals) in self.pending.iter().take(HOME_SECTION_LIMIT) {
            let id = r.id.get();
            let line = my_line(r, self.now);
            blocks.push(json!({"type": "section", "block_id": format!("mine:{id}"),
                "text": {"type": "mrkdwn", "text": fit(&format!("{} ({})", line.trim_start_matches("• "), approvals_so_far(r, approvals)), 3000)},
                "accessory": {"type": "button", "action_id": "cancel", "value": id.to_string(),
                    "text": {"type": "plain_text", "text": "Cancel"}}}));
        }
        blocks.extend(more(self.pending.len(), "pending requests"));

        blocks.push(json!({"type": "divider"}));
        blocks.push(header("Waiting for your approval"));
        if self.awaiting.is_empty() {
            blocks.push(mrkdwn("Nothing waits for your approval."));
        }
        for (r, approvals) in self.awaiting.iter().take(HOME_SECTION_LIMIT) {
            blocks.extend(decision_blocks(r, approvals));
        }
        blocks.extend(more(self.awaiting.len(), "requests"));
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
            "text": format!("Updated {}. `/jit help` lists every command.", slack_date(self.now))}]}));
        json!({"type": "home", "blocks": blocks})
    }
}

/// The confirmation an administrator sees after `/jit revoke-all`: what
/// would happen, and a button behind Slack's confirmation dialog.
pub struct RevokeAllConfirmation<'a> {
    /// Why (already cut to fit a button value).
    pub reason: &'a str,
    /// Grants that would be revoked.
    pub live: usize,
    /// Pending requests that would be cancelled.
    pub pending: usize,
}

impl RevokeAllConfirmation<'_> {
    /// Renders the message.
    pub fn render(&self) -> Message {
        let text = format!(
            ":rotating_light: *Revoke ALL access?* {} live grant{} would be revoked and {} pending request{} cancelled, in every role. Reason:\n>{}",
            self.live,
            if self.live == 1 { "" } else { "s" },
            self.pending,
            if self.pending == 1 { "" } else { "s" },
            escape(self.reason).replace('\n', "\n>")
        );
        let text = fit(&text, 3000);
        Message {
            blocks: vec![
                json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}),
                json!({"type": "actions", "elements": [{"type": "button", "action_id": "revoke_all",
                "value": truncate(self.reason, 1000), "style": "danger",
                "text": {"type": "plain_text", "text": "Revoke all access"},
                "confirm": {
                    "title": {"type": "plain_text", "text": "Revoke all access?"},
                    "text": {"type": "plain_text", "text": "Every grant jitbot gave is revoked now and every pending request cancelled. This cannot be undone."},
                    "confirm": {"type": "plain_text", "text": "Revoke everything"},
                    "deny": {"type": "plain_text", "text": "Cancel"},
                    "style": "danger"
                }}]}),
            ],
            text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn time_left_reads_naturally() {
        let now = Timestamp::from_millis(0);
        assert_eq!(time_left(now, now.plus(Duration::from_secs(25 * 60 + 30))), "25m left");
        assert_eq!(time_left(now, now.plus(Duration::from_secs(3600))), "1h left");
        assert_eq!(time_left(now, now.plus(Duration::from_secs(3900))), "1h 5m left");
        assert_eq!(time_left(now, now.plus(Duration::from_secs(30))), "less than a minute left");
        assert_eq!(time_left(now, Timestamp::from_millis(-5)), "less than a minute left");
    }
}
