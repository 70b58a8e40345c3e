//! Messages as templates: each function renders one kind of message to
//! Block Kit plus a plain-text fallback (what notifications and screen
//! readers show). Times use Slack's `<!date^...>` so every reader sees their
//! own time zone. User-typed text is escaped and cut to Slack's limits.

use serde_json::{Value, json};

use crate::domain::{AccessRequest, RequestState, Timestamp};
use crate::notify::NoticeKind;
use crate::store::ApprovalRow;

/// A rendered message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The plain-text fallback.
    pub text: String,
    /// Block Kit blocks (empty for plain messages).
    pub blocks: Vec<Value>,
}

impl Message {
    fn plain(text: String) -> Self {
        Self { text, blocks: Vec::new() }
    }
}

/// Escapes the three characters Slack's mrkdwn treats as control characters.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Cuts `text` to at most `max` characters, marking the cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Cuts already-escaped mrkdwn to at most `max` characters without leaving
/// half an entity (`&am…`) at the end.
pub fn fit(mrkdwn: &str, max: usize) -> String {
    let mut out = truncate(mrkdwn, max);
    if out.chars().count() < mrkdwn.chars().count() {
        out.pop();
        if let Some(amp) = out.rfind('&')
            && !out[amp..].contains(';')
        {
            out.truncate(amp);
        }
        out.push('…');
    }
    out
}

/// A time every reader sees in their own zone, with a UTC fallback.
pub fn slack_date(t: Timestamp) -> String {
    let fallback = jiff::Timestamp::from_second(t.seconds())
        .map(|ts| ts.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| t.to_string());
    format!("<!date^{}^{{date_short_pretty}} at {{time}}|{fallback}>", t.seconds())
}

fn mention(user_id: &str) -> String {
    format!("<@{user_id}>")
}

fn approvers(approvals: &[ApprovalRow], decision: &str) -> Vec<String> {
    approvals.iter().filter(|a| a.decision == decision).map(|a| mention(&a.approver_id)).collect()
}

/// The card's status line for the request's current state.
pub fn status_line(r: &AccessRequest, approvals: &[ApprovalRow]) -> String {
    let approved_by = approvers(approvals, "approve").join(", ");
    let detail = r.state_detail.as_deref().map(|d| escape(&truncate(d, 500)));
    match r.state {
        RequestState::Pending => {
            let n = approvers(approvals, "approve").len();
            if n == 0 {
                format!(":hourglass_flowing_sand: Waiting for approval (0 of {})", r.approvals_required)
            } else {
                format!(":hourglass_flowing_sand: {n} of {} approvals: {approved_by}", r.approvals_required)
            }
        }
        RequestState::Approved | RequestState::Granting => {
            format!(":white_check_mark: Approved by {approved_by} · granting access…")
        }
        RequestState::Active => match r.expires_at {
            Some(t) => format!(":white_check_mark: Approved by {approved_by} · active until {}", slack_date(t)),
            None => format!(":white_check_mark: Approved by {approved_by} · active"),
        },
        RequestState::Revoking => format!(":lock: Approved by {approved_by} · revoking access…"),
        RequestState::Revoked => {
            let when = r.ended_at.map(slack_date).unwrap_or_default();
            match detail.filter(|d| d != "expired") {
                Some(d) => format!(":lock: Access ended {when} ({d}) · approved by {approved_by}"),
                None => format!(":lock: Access expired {when} · approved by {approved_by}"),
            }
        }
        RequestState::Denied => {
            let by = approvers(approvals, "deny").join(", ");
            match detail {
                Some(d) => format!(":x: Denied by {by}: {d}"),
                None => format!(":x: Denied by {by}"),
            }
        }
        RequestState::Cancelled => ":no_entry_sign: Cancelled by the requester".to_owned(),
        RequestState::TimedOut => ":hourglass: Timed out: nobody decided in time".to_owned(),
        RequestState::GrantFailed => {
            format!(":warning: Approved by {approved_by}, but the grant failed: {}", detail.unwrap_or_default())
        }
        RequestState::RevokeFailed => {
            format!(":rotating_light: Revocation is failing and is being retried: {}", detail.unwrap_or_default())
        }
        // The detail of a completed action is its output: that goes to the
        // requester only, not on the card.
        RequestState::Completed => format!(
            ":white_check_mark: Approved by {approved_by} · the action ran {}",
            r.ended_at.map(slack_date).unwrap_or_default()
        ),
        RequestState::ActionFailed => {
            format!(":warning: Approved by {approved_by}, but the action failed: {}", detail.unwrap_or_default())
        }
    }
}

/// The approval card in the approvers' channel. Buttons only while pending.
pub struct ApprovalCard<'a> {
    /// The request, as it is now.
    pub request: &'a AccessRequest,
    /// Its decisions so far.
    pub approvals: &'a [ApprovalRow],
    /// The role's description from the config.
    pub description: &'a str,
}

impl ApprovalCard<'_> {
    /// Renders the card.
    pub fn render(&self) -> Message {
        approval_card(self.request, self.approvals, self.description)
    }
}

/// A DM to the requester about a notice (only some notices send one).
pub struct RequesterDm<'a> {
    /// What happened.
    pub kind: NoticeKind,
    /// The request, as it is now.
    pub request: &'a AccessRequest,
    /// Its decisions.
    pub approvals: &'a [ApprovalRow],
}

impl RequesterDm<'_> {
    /// Renders the DM, or `None` when this notice sends none.
    pub fn render(&self) -> Option<Message> {
        requester_dm(self.kind, self.request, self.approvals)
    }
}

/// A line in the audit channel (decisions, grants, revocations, alerts).
pub struct AuditLine<'a> {
    /// What happened.
    pub kind: NoticeKind,
    /// The request, as it is now.
    pub request: &'a AccessRequest,
    /// Its decisions.
    pub approvals: &'a [ApprovalRow],
}

impl AuditLine<'_> {
    /// Renders the line, or `None` when this notice writes none.
    pub fn render(&self) -> Option<Message> {
        audit_line(self.kind, self.request, self.approvals)
    }
}

fn approval_card(r: &AccessRequest, approvals: &[ApprovalRow], description: &str) -> Message {
    let id = r.id.get();
    let status = status_line(r, approvals);
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Requester*\n{}", mention(r.requester.user_id()))}),
        json!({"type": "mrkdwn", "text": format!("*Role*\n`{}`", r.role)}),
        json!({"type": "mrkdwn", "text": format!("*Duration*\n{}", r.duration)}),
        json!({"type": "mrkdwn", "text": format!("*Approvals needed*\n{}", r.approvals_required)}),
    ];
    if let Some(ticket) = &r.ticket {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Ticket*\n{}", escape(&truncate(ticket, 200)))}));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": format!("Access request #{id}"), "emoji": true}}),
        json!({"type": "section", "fields": fields}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": fit(&format!("*Reason*\n>{}", escape(&r.reason).replace('\n', "\n>")), 3000)}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
            "{} · requested {} · {}",
            escape(&truncate(description, 300)),
            slack_date(r.created_at),
            r.requester_email
        )}]}),
        json!({"type": "section", "block_id": format!("status:{id}"), "text": {"type": "mrkdwn", "text": fit(&status, 3000)}}),
    ];
    if r.state == RequestState::Pending {
        blocks.push(json!({
            "type": "actions",
            "block_id": format!("decide:{id}"),
            "elements": [
                {"type": "button", "action_id": "approve", "value": id.to_string(), "style": "primary",
                 "text": {"type": "plain_text", "text": "Approve", "emoji": true}},
                {"type": "button", "action_id": "deny", "value": id.to_string(), "style": "danger",
                 "text": {"type": "plain_text", "text": "Deny", "emoji": true}},
            ]
        }));
    }
    let text = format!(
        "Access request #{id}: {} asks for {} for {} — {}",
        mention(r.requester.user_id()),
        r.role,
        r.duration,
        r.state.describe()
    );
    Message { text, blocks }
}

fn requester_dm(kind: NoticeKind, r: &AccessRequest, approvals: &[ApprovalRow]) -> Option<Message> {
    let id = r.id.get();
    let text = match kind {
        NoticeKind::Granted => format!(
            ":white_check_mark: Your `{}` access (request #{id}) is active until {}. Approved by {}. Done early? `/jit revoke {id}`",
            r.role,
            r.expires_at.map(slack_date).unwrap_or_default(),
            approvers(approvals, "approve").join(", ")
        ),
        NoticeKind::Denied => {
            let by = approvers(approvals, "deny").join(", ");
            match &r.state_detail {
                Some(reason) => format!(
                    ":x: Your request #{id} for `{}` was denied by {by}: {}",
                    r.role,
                    escape(&truncate(reason, 1000))
                ),
                None => format!(":x: Your request #{id} for `{}` was denied by {by}.", r.role),
            }
        }
        NoticeKind::GrantFailed => format!(
            ":warning: Your request #{id} for `{}` was approved, but granting it failed: {}. Nothing is active; the administrators are alerted.",
            r.role,
            escape(r.state_detail.as_deref().unwrap_or("unknown error"))
        ),
        NoticeKind::Revoked => format!(":lock: Your `{}` access (request #{id}) has ended.", r.role),
        NoticeKind::ActionFinished if r.state == RequestState::Completed => format!(
            ":white_check_mark: Your action `{}` (request #{id}) ran. Output:\n```{}```",
            r.role,
            code_block(r.state_detail.as_deref().unwrap_or(""), 2500)
        ),
        NoticeKind::ActionFinished => format!(
            ":warning: Your action `{}` (request #{id}) failed: {}. It was not run again; ask for it anew if it should.",
            r.role,
            escape(&truncate(r.state_detail.as_deref().unwrap_or("unknown error"), 1000))
        ),
        _ => return None,
    };
    Some(Message::plain(text))
}

/// Text for inside a ``` block: escaped, cut, and unable to close the block early.
fn code_block(text: &str, max: usize) -> String {
    let body = if text.trim().is_empty() { "(no output)" } else { text };
    escape(&truncate(body, max)).replace("```", "`\u{200b}``")
}

/// The DM that carries a one-time credentials link (never the credentials).
pub struct CredentialsDm<'a> {
    /// The request the login was created for.
    pub request: &'a AccessRequest,
    /// The login's name in the database.
    pub login: &'a str,
    /// The single-use link to the credentials page.
    pub url: &'a str,
}

impl CredentialsDm<'_> {
    /// Renders the DM.
    pub fn render(&self) -> Message {
        Message::plain(format!(
            ":key: A database login `{}` was created for your request #{}. Set its password once here (the link works a single time, until {}): {}",
            escape(self.login),
            self.request.id.get(),
            self.request.expires_at.map(slack_date).unwrap_or_default(),
            self.url
        ))
    }
}

fn audit_line(kind: NoticeKind, r: &AccessRequest, approvals: &[ApprovalRow]) -> Option<Message> {
    let who = mention(r.requester.user_id());
    let id = r.id.get();
    let text = match kind {
        NoticeKind::Approved => format!(
            "#{id} {who} `{}` for {}: approved by {}",
            r.role,
            r.duration,
            approvers(approvals, "approve").join(", ")
        ),
        NoticeKind::Denied => {
            format!("#{id} {who} `{}`: denied by {}", r.role, approvers(approvals, "deny").join(", "))
        }
        NoticeKind::Granted => format!("#{id} {who} `{}`: granted", r.role),
        NoticeKind::Revoked => match r.state_detail.as_deref().filter(|d| *d != "expired") {
            Some(why) => format!("#{id} {who} `{}`: revoked ({})", r.role, escape(&truncate(why, 500))),
            None => format!("#{id} {who} `{}`: revoked", r.role),
        },
        NoticeKind::GrantFailed => format!(
            ":warning: #{id} {who} `{}`: grant FAILED: {}",
            r.role,
            escape(r.state_detail.as_deref().unwrap_or(""))
        ),
        NoticeKind::RevokeFailing => revoke_alert(r).text,
        NoticeKind::RevokeOverdue => format!(
            ":rotating_light: Revocation of request #{id} ({who} {}, `{}` on provider `{}`) is OVERDUE: access should have ended at {} but the request is still {}: {}. jitbot keeps retrying; check the target.",
            escape(&r.requester_email),
            r.role,
            escape(&r.provider),
            r.expires_at.map(slack_date).unwrap_or_default(),
            r.state.describe(),
            escape(&truncate(r.state_detail.as_deref().unwrap_or("no error recorded"), 1000))
        ),
        NoticeKind::ActionFinished if r.state == RequestState::Completed => {
            format!("#{id} {who} `{}`: one-shot action ran", r.role)
        }
        NoticeKind::ActionFinished => format!(
            ":warning: #{id} {who} `{}`: one-shot action FAILED: {}",
            r.role,
            escape(&truncate(r.state_detail.as_deref().unwrap_or(""), 1000))
        ),
        _ => return None,
    };
    Some(Message::plain(text))
}

fn revoke_alert(r: &AccessRequest) -> Message {
    Message::plain(format!(
        ":rotating_light: Revocation of request #{} ({} {}, `{}` on provider `{}`) keeps failing: {}. jitbot keeps retrying; access may still exist in the target.",
        r.id.get(),
        mention(r.requester.user_id()),
        escape(&r.requester_email),
        r.role,
        escape(&r.provider),
        escape(&truncate(r.state_detail.as_deref().unwrap_or("unknown error"), 1500))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_is_escaped_and_cut_without_half_entities() {
        assert_eq!(escape("<@U1> & <!channel>"), "&lt;@U1&gt; &amp; &lt;!channel&gt;");
        assert_eq!(fit("abc", 5), "abc");
        assert_eq!(fit("abcdef", 5), "abcd…");
        assert_eq!(fit("ab&amp;cdef", 5), "ab…");
        assert_eq!(truncate("héllo", 3), "hé…");
    }

    #[test]
    fn dates_render_for_each_readers_zone_with_a_utc_fallback() {
        let t = Timestamp::parse_rfc3339("2026-01-01T00:30:00Z").unwrap();
        assert_eq!(slack_date(t), "<!date^1767227400^{date_short_pretty} at {time}|2026-01-01 00:30 UTC>");
    }
}
