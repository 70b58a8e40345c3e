//! Modal views as templates: the request form, the deny form, the
//! break-glass form and the confirmation shown after a request is sent.
//! Like [`super::views`], each renders Block Kit JSON within Slack's limits
//! (a modal title is at most 24 characters, option texts 75, ...); user text
//! is cut to fit.
//!
//! Block and action ids are the contract with [`super::forms`], which reads
//! a submission's values back by them.

use serde_json::{Value, json};

use super::views::{escape, fit, truncate};
use crate::domain::{AccessDuration, AccessRequest, RolePolicy};

/// `callback_id` of the request form.
pub const REQUEST_FORM: &str = "request";
/// `callback_id` of the deny form.
pub const DENY_FORM: &str = "deny";
/// `callback_id` of the break-glass form.
pub const BREAK_GLASS_FORM: &str = "break_glass";

/// Block (and action) ids of the request form's fields.
pub mod field {
    /// The role select (dispatches an action when changed, to redraw the form).
    pub const ROLE: &str = "role";
    /// The duration select.
    pub const DURATION: &str = "duration";
    /// The reason text.
    pub const REASON: &str = "reason";
    /// The ticket id (only when a role needs one).
    pub const TICKET: &str = "ticket";
}

/// The longest reason the forms accept (Slack's input limit is 3000).
pub const REASON_MAX: usize = 2000;

fn plain(text: &str, max: usize) -> Value {
    json!({"type": "plain_text", "text": truncate(text, max)})
}

/// One role the person may request, as the form lists it.
#[derive(Debug, Clone)]
pub struct RoleChoice {
    /// The role's rules (name, durations, ticket pattern).
    pub policy: RolePolicy,
    /// The role's one-line description.
    pub description: String,
}

/// The `/jit request` form: a role select listing only the roles this person
/// may request, a duration select bounded by the chosen role, the reason,
/// and the ticket when the chosen role needs one.
pub struct RequestForm<'a> {
    /// The roles offered (never empty: with none the form is not opened).
    pub roles: &'a [RoleChoice],
    /// The role chosen so far, if any.
    pub selected: Option<&'a str>,
    /// Text typed so far, kept when the form is redrawn.
    pub reason: Option<&'a str>,
    /// Ticket typed so far.
    pub ticket: Option<&'a str>,
}

fn duration_option(d: AccessDuration) -> Value {
    json!({"text": {"type": "plain_text", "text": d.to_string()}, "value": d.get().as_secs().to_string()})
}

impl RequestForm<'_> {
    /// Renders the modal view.
    pub fn render(&self) -> Value {
        let chosen = self.selected.and_then(|s| self.roles.iter().find(|r| r.policy.role.as_str() == s));
        let role_options: Vec<Value> = self
            .roles
            .iter()
            .take(100)
            .map(|r| {
                let mut o = json!({"text": plain(r.policy.role.as_str(), 75), "value": r.policy.role.as_str()});
                if !r.description.trim().is_empty() {
                    o["description"] = plain(&r.description, 75);
                }
                o
            })
            .collect();
        let mut role = json!({"type": "static_select", "action_id": field::ROLE,
            "placeholder": plain("Choose a role", 150), "options": role_options});
        if let Some(c) = chosen
            && let Some(o) = role["options"]
                .as_array()
                .and_then(|o| o.iter().find(|o| o["value"] == c.policy.role.as_str()).cloned())
        {
            role["initial_option"] = o;
        }
        // Bounded by the chosen role; before a choice, by the longest role.
        let durations: Vec<AccessDuration> = match chosen {
            Some(c) => c.policy.duration_choices(),
            None => {
                let mut all: Vec<AccessDuration> =
                    self.roles.iter().flat_map(|r| r.policy.duration_choices()).collect();
                all.sort();
                all.dedup();
                all
            }
        };
        let mut duration = json!({"type": "static_select", "action_id": field::DURATION,
            "placeholder": plain("How long", 150),
            "options": durations.iter().take(100).map(|d| duration_option(*d)).collect::<Vec<_>>()});
        if let Some(c) = chosen {
            duration["initial_option"] = duration_option(c.policy.default_duration);
        }
        let min_reason = chosen
            .map(|c| c.policy.reason_min_length)
            .or_else(|| self.roles.iter().map(|r| r.policy.reason_min_length).min())
            .unwrap_or(1)
            .clamp(1, REASON_MAX);
        let mut reason = json!({"type": "plain_text_input", "action_id": field::REASON, "multiline": true,
            "min_length": min_reason, "max_length": REASON_MAX,
            "placeholder": plain("What are you doing, and why?", 150)});
        if let Some(r) = self.reason.filter(|r| !r.is_empty()) {
            reason["initial_value"] = json!(truncate(r, REASON_MAX));
        }
        let mut blocks = vec![
            json!({"type": "input", "block_id": field::ROLE, "dispatch_action": true,
                "label": plain("Role", 2000), "element": role}),
            json!({"type": "input", "block_id": field::DURATION, "label": plain("Duration", 2000), "element": duration}),
            json!({"type": "input", "block_id": field::REASON, "label": plain("Reason", 2000), "element": reason}),
        ];
        if let Some(pattern) = chosen.and_then(|c| c.policy.ticket_pattern.as_ref()) {
            let mut ticket = json!({"type": "plain_text_input", "action_id": field::TICKET,
                "max_length": crate::domain::policy::TICKET_MAX_LENGTH, "placeholder": plain("e.g. INC-4821", 150)});
            if let Some(t) = self.ticket.filter(|t| !t.is_empty()) {
                ticket["initial_value"] = json!(truncate(t, crate::domain::policy::TICKET_MAX_LENGTH));
            }
            blocks.push(json!({"type": "input", "block_id": field::TICKET, "label": plain("Ticket", 2000),
                "hint": plain(&format!("Required for this role; must match {}", pattern.as_str()), 2000),
                "element": ticket}));
        }
        if let Some(c) = chosen {
            let mut notes = vec![format!("Up to {}", c.policy.max_duration)];
            if c.policy.approvals_required > 1 {
                notes.push(format!("{} approvals needed", c.policy.approvals_required));
            }
            if let Some(auto) = &c.policy.auto_approve {
                notes.push(format!(
                    "members of {} get up to {} without approval",
                    auto.groups.iter().cloned().collect::<Vec<_>>().join(", "),
                    auto.max_duration
                ));
            }
            blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
                "text": fit(&escape(&format!("{}. {}", c.description, notes.join(" · "))), 2000)}]}));
        }
        json!({
            "type": "modal",
            "callback_id": REQUEST_FORM,
            "private_metadata": chosen.map(|c| c.policy.role.as_str()).unwrap_or(""),
            "title": plain("Request access", 24),
            "submit": plain("Request", 24),
            "close": plain("Cancel", 24),
            "blocks": blocks,
        })
    }
}

/// What replaces the request form once the request is made.
pub struct RequestSent<'a> {
    /// The request as made.
    pub request: &'a AccessRequest,
    /// What happens next, in a sentence.
    pub next: &'a str,
}

impl RequestSent<'_> {
    /// Renders the modal view (no submit button: there is nothing to do).
    pub fn render(&self) -> Value {
        let r = self.request;
        json!({
            "type": "modal",
            "title": plain(&format!("Request #{}", r.id.get()), 24),
            "close": plain("Close", 24),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": fit(&format!(
                ":white_check_mark: Request #{} for `{}` ({}). {}",
                r.id.get(),
                r.role,
                r.duration,
                self.next
            ), 3000)}}],
        })
    }
}

/// The small form behind **Deny**: an optional reason, shown on the card
/// and in the requester's DM.
pub struct DenyForm<'a> {
    /// The request being denied.
    pub request: &'a AccessRequest,
}

impl DenyForm<'_> {
    /// Renders the modal view; the request id travels in `private_metadata`.
    pub fn render(&self) -> Value {
        let r = self.request;
        json!({
            "type": "modal",
            "callback_id": DENY_FORM,
            "private_metadata": r.id.get().to_string(),
            "title": plain(&format!("Deny request #{}", r.id.get()), 24),
            "submit": plain("Deny", 24),
            "close": plain("Cancel", 24),
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": fit(&format!(
                    "<@{}> asks for `{}` for {}:\n>{}",
                    r.requester.user_id(),
                    r.role,
                    r.duration,
                    escape(&r.reason).replace('\n', "\n>")
                ), 3000)}},
                {"type": "input", "block_id": field::REASON, "optional": true, "label": plain("Reason (optional)", 2000),
                 "hint": plain("Shown on the card and to the requester.", 2000),
                 "element": {"type": "plain_text_input", "action_id": field::REASON, "multiline": true,
                    "max_length": 1000, "placeholder": plain("e.g. use the read replica instead", 150)}},
            ],
        })
    }
}

/// The form behind **Break glass**: the mandatory reason for approving
/// one's own request alone.
pub struct BreakGlassForm<'a> {
    /// The requester's pending request.
    pub request: &'a AccessRequest,
    /// The shortest acceptable reason.
    pub min_reason: usize,
}

impl BreakGlassForm<'_> {
    /// Renders the modal view; the request id travels in `private_metadata`.
    pub fn render(&self) -> Value {
        let r = self.request;
        json!({
            "type": "modal",
            "callback_id": BREAK_GLASS_FORM,
            "private_metadata": r.id.get().to_string(),
            "title": plain("Break glass", 24),
            "submit": plain("Approve it myself", 24),
            "close": plain("Cancel", 24),
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": fit(&format!(
                    ":rotating_light: You are about to approve your own request #{} for `{}` ({}) without approvers. \
                     It is announced on the card and in the audit channel, and flagged for review.",
                    r.id.get(),
                    r.role,
                    r.duration
                ), 3000)}},
                {"type": "input", "block_id": field::REASON, "label": plain("Why can this not wait for an approver?", 2000),
                 "element": {"type": "plain_text_input", "action_id": field::REASON, "multiline": true,
                    "min_length": self.min_reason.clamp(1, 1000), "max_length": 1000}},
            ],
        })
    }
}
