//! Messages as templates: each function renders one kind of message to
//! Block Kit plus a plain-text fallback (what notifications and screen
//! readers show). Times use Slack's `<!date^...>` so every reader sees their
//! own time zone. User-typed text is escaped and cut to Slack's limits.

use serde_json::{Value, json};

use crate::domain::{AccessDuration, AccessRequest, Approval, Decision, RequestState, Timestamp};
use crate::notify::NoticeKind;

/// A rendered message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The plain-text fallback.
    pub text: String,
    /// Block Kit blocks (empty for plain messages).
    pub blocks: Vec<Value>,
}

impl From<Message> for super::routes::Reply {
    fn from(m: Message) -> Self {
        Self { text: m.text, blocks: m.blocks }
    }
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

fn approvers(approvals: &[Approval], decision: Decision) -> Vec<String> {
    approvals.iter().filter(|a| a.decision == decision).map(|a| mention(&a.approver_id)).collect()
}

/// Who let the request through: approvers, the auto-approval rule, or the
/// requester's break-glass.
fn approved_by(r: &AccessRequest, approvals: &[Approval]) -> String {
    if let Some(why) = &r.auto_approved {
        format!("Auto-approved ({})", escape(why))
    } else if r.break_glass_reason.is_some() {
        format!("BREAK-GLASS self-approval by {}", mention(r.requester.user_id()))
    } else {
        format!("Approved by {}", approvers(approvals, Decision::Approve).join(", "))
    }
}

/// "Approved by …" → "approved by …", to continue a sentence; words in
/// capitals (BREAK-GLASS) stay as they are.
fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if second.is_lowercase() => {
            format!("{}{}", first.to_lowercase(), &s[first.len_utf8()..])
        }
        _ => s.to_owned(),
    }
}

/// Percent-encodes a ticket id for use in a URL path or query.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The ticket as mrkdwn: a link when the role has a `ticket_url`.
pub fn ticket_text(ticket: &str, ticket_url: Option<&str>) -> String {
    let shown = escape(&truncate(ticket, 100));
    match ticket_url {
        // A link cannot be cut without breaking it: an absurdly long one is left out.
        Some(url) if url.len() < 1500 => {
            format!("<{}|{shown}>", escape(&url.replace("{ticket}", &url_encode(ticket))))
        }
        _ => shown,
    }
}

/// The card's status line for the request's current state.
pub fn status_line(r: &AccessRequest, approvals: &[Approval]) -> String {
    let by = approved_by(r, approvals);
    let by_lower = lower_first(&by);
    let detail = r.state_detail.as_deref().map(|d| escape(&truncate(d, 500)));
    match r.state {
        RequestState::Pending => {
            let yes = approvers(approvals, Decision::Approve);
            let progress = if yes.is_empty() {
                format!(":hourglass_flowing_sand: Waiting for approval (0 of {})", r.approvals_required)
            } else {
                format!(
                    ":hourglass_flowing_sand: {} of {} approvals: {}",
                    yes.len(),
                    r.approvals_required,
                    yes.join(", ")
                )
            };
            match r.decide_by {
                Some(t) => format!("{progress} · times out {}", slack_date(t)),
                None => progress,
            }
        }
        RequestState::Approved | RequestState::Granting => {
            format!(":white_check_mark: {by} · granting access…")
        }
        RequestState::Active => match r.expires_at {
            Some(t) => format!(":white_check_mark: {by} · active until {}", slack_date(t)),
            None => format!(":white_check_mark: {by} · active"),
        },
        RequestState::Revoking => format!(":lock: {by} · revoking access…"),
        RequestState::Extended => match r.expires_at {
            Some(t) => format!(":white_check_mark: {by} · access extended until {}", slack_date(t)),
            None => format!(":white_check_mark: {by} · access extended"),
        },
        RequestState::Revoked => {
            let when = r.ended_at.map(slack_date).unwrap_or_default();
            match detail.filter(|d| d != "expired") {
                Some(d) => format!(":lock: Access ended {when} ({d}) · {by_lower}"),
                None => format!(":lock: Access expired {when} · {by_lower}"),
            }
        }
        RequestState::Denied => {
            let by = approvers(approvals, Decision::Deny).join(", ");
            match detail {
                Some(d) => format!(":x: Denied by {by}: {d}"),
                None => format!(":x: Denied by {by}"),
            }
        }
        RequestState::Cancelled => ":no_entry_sign: Cancelled by the requester".to_owned(),
        RequestState::TimedOut => match detail {
            Some(d) => format!(":hourglass: Timed out: {d}"),
            None => ":hourglass: Timed out: nobody decided in time".to_owned(),
        },
        RequestState::GrantFailed => {
            format!(":warning: {by}, but the grant failed: {}", detail.unwrap_or_default())
        }
        RequestState::RevokeFailed => {
            format!(":rotating_light: Revocation is failing and is being retried: {}", detail.unwrap_or_default())
        }
        // The detail of a completed action is its output: that goes to the
        // requester only, not on the card.
        RequestState::Completed => {
            format!(":white_check_mark: {by} · the action ran {}", r.ended_at.map(slack_date).unwrap_or_default())
        }
        RequestState::ActionFailed => {
            format!(":warning: {by}, but the action failed: {}", detail.unwrap_or_default())
        }
    }
}

/// The approval card in the approvers' channel. Buttons only while pending.
pub struct ApprovalCard<'a> {
    /// The request, as it is now.
    pub request: &'a AccessRequest,
    /// Its decisions so far.
    pub approvals: &'a [Approval],
    /// The role's description from the config.
    pub description: &'a str,
    /// The role's `ticket_url` (with `{ticket}`), to link the ticket.
    pub ticket_url: Option<&'a str>,
    /// Whether the role allows break-glass (the card then says how).
    pub break_glass: bool,
}

impl ApprovalCard<'_> {
    /// Renders the card.
    pub fn render(&self) -> Message {
        approval_card(self)
    }
}

/// The audit channel's one line for a minute's revocations beyond the few
/// posted one by one: a burst of expiries costs one message, not hundreds.
pub struct RevocationDigestLine<'a> {
    /// The start of the minute.
    pub minute: Timestamp,
    /// The revocations held for this line, oldest request first.
    pub held: &'a [AccessRequest],
    /// How many revocation lines the minute had in all (posted or held).
    pub total: i64,
}

/// How many revocations a digest line names before it only counts.
const DIGEST_NAMES: usize = 40;

impl RevocationDigestLine<'_> {
    /// Renders the line (plain text, kept under Slack's section limit).
    pub fn render(&self) -> Message {
        let posted = self.total - i64::try_from(self.held.len()).unwrap_or(0);
        let names: Vec<String> = self
            .held
            .iter()
            .take(DIGEST_NAMES)
            .map(|r| format!("#{} {} `{}`", r.id.get(), mention(r.requester.user_id()), r.role))
            .collect();
        let more = self.held.len().saturating_sub(DIGEST_NAMES);
        let mut text = format!(
            ":lock: {} revocations in the minute from {} ({posted} posted one by one); the other {}: {}",
            self.total,
            slack_date(self.minute),
            self.held.len(),
            names.join(", ")
        );
        if more > 0 {
            text.push_str(&format!(" and {more} more"));
        }
        Message::plain(text)
    }
}

/// A line in the audit channel about no single request (the kill switch).
pub struct AnnouncementLine<'a> {
    /// What happened.
    pub announcement: &'a crate::notify::Announcement,
}

impl AnnouncementLine<'_> {
    /// Renders the line.
    pub fn render(&self) -> Message {
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        match self.announcement {
            crate::notify::Announcement::RevokeAll { slack_user, actor, reason, revoking, cancelled } => {
                Message::plain(format!(
                    ":rotating_light: *All access revoked* by {}: {}. {} being revoked, {} cancelled. Nothing is granted until an administrator releases the kill switch (`/jit unfreeze <reason>`).",
                    slack_user.as_deref().map(mention).unwrap_or_else(|| escape(actor)),
                    escape(&truncate(reason, 2000)),
                    plural(*revoking, "grant"),
                    plural(*cancelled, "pending request"),
                ))
            }
            crate::notify::Announcement::KillSwitchReleased { slack_user, actor, reason } => Message::plain(format!(
                ":white_check_mark: *Kill switch released* by {}: {}. Approvals grant access again.",
                slack_user.as_deref().map(mention).unwrap_or_else(|| escape(actor)),
                escape(&truncate(reason, 2000)),
            )),
            // The line is plain ASCII (digits, hex, an RFC 3339 time) and is
            // posted untouched, so what people paste back verifies.
            crate::notify::Announcement::AuditCheckpoint { line, rewound_from: None } => Message::plain(line.clone()),
            crate::notify::Announcement::AuditCheckpoint { line, rewound_from: Some(from) } => Message::plain(format!(
                ":rotating_light: *The audit trail no longer reaches row {from}* as the previous checkpoint recorded it: \
                 rows were deleted or rewritten, or the database was restored from an older copy. \
                 Check with `jitbot audit verify --checkpoint-file` and the checkpoints in this channel.\n{line}"
            )),
            crate::notify::Announcement::ReportDigest { lines, recommendations, link } => {
                let figures = truncate(&escape(&lines.join("\n")), 2900);
                let advice = if recommendations.is_empty() {
                    "No recommendations this week.".to_owned()
                } else {
                    let items: Vec<String> = recommendations
                        .iter()
                        .enumerate()
                        .map(|(i, r)| format!("{}. {}", i + 1, escape(&truncate(r, 500))))
                        .collect();
                    truncate(&format!("*Recommendations*\n{}", items.join("\n")), 2900)
                };
                let more = format!("The full report: <{link}|the report page> (or `jitbot report`)");
                // The fallback text carries everything for notifications and
                // clients that do not draw blocks.
                let text = format!(":bar_chart: *Access report, last 7 days*\n{figures}\n{advice}\n{more}");
                Message {
                    text,
                    blocks: vec![
                        json!({"type": "header", "text": {"type": "plain_text", "text": "Access report, last 7 days", "emoji": true}}),
                        json!({"type": "section", "text": {"type": "mrkdwn", "text": figures}}),
                        json!({"type": "section", "text": {"type": "mrkdwn", "text": advice}}),
                        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]}),
                    ],
                }
            }
        }
    }
}

/// The reminder posted under a card halfway to its approval timeout.
pub struct ReminderLine<'a> {
    /// The request, still pending.
    pub request: &'a AccessRequest,
    /// Its approvals so far.
    pub approvals: &'a [Approval],
}

impl ReminderLine<'_> {
    /// Renders the reminder.
    pub fn render(&self) -> Message {
        let r = self.request;
        let got = approvers(self.approvals, Decision::Approve).len();
        let deadline = r.decide_by.map(|t| format!(" It times out {}.", slack_date(t))).unwrap_or_default();
        Message::plain(format!(
            ":bell: Request #{} from {} for `{}` ({}) still needs approval ({got} of {}).{deadline}",
            r.id.get(),
            mention(r.requester.user_id()),
            r.role,
            r.duration,
            r.approvals_required
        ))
    }
}

/// A DM to the requester about a notice (only some notices send one).
pub struct RequesterDm<'a> {
    /// What happened.
    pub kind: NoticeKind,
    /// The request, as it is now.
    pub request: &'a AccessRequest,
    /// Its decisions.
    pub approvals: &'a [Approval],
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
    pub approvals: &'a [Approval],
}

impl AuditLine<'_> {
    /// Renders the line, or `None` when this notice writes none.
    pub fn render(&self) -> Option<Message> {
        audit_line(self.kind, self.request, self.approvals)
    }
}

fn approval_card(card: &ApprovalCard<'_>) -> Message {
    let (r, approvals, description) = (card.request, card.approvals, card.description);
    let id = r.id.get();
    let status = status_line(r, approvals);
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Requester*\n{}", mention(r.requester.user_id()))}),
        json!({"type": "mrkdwn", "text": format!("*Role*\n`{}`", r.role)}),
        json!({"type": "mrkdwn", "text": match r.extends {
            Some(_) => format!("*Extension*\n+{}", r.duration),
            None => format!("*Duration*\n{}", r.duration),
        }}),
        json!({"type": "mrkdwn", "text": format!("*Approvals needed*\n{}", r.approvals_required)}),
    ];
    if let Some(ticket) = &r.ticket {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Ticket*\n{}", ticket_text(ticket, card.ticket_url))}));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": format!("Access request #{id}"), "emoji": true}}),
    ];
    if let Some(parent) = r.extends {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
            ":arrows_counterclockwise: Extension of request #{}: {} asks for {} more",
            parent.get(),
            mention(r.requester.user_id()),
            r.duration
        )}]}));
    }
    if let Some(reason) = &r.break_glass_reason {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": fit(&format!(
            ":rotating_light: *BREAK-GLASS* — {} approved their own request. Flagged for review.\n>{}",
            mention(r.requester.user_id()),
            escape(reason).replace('\n', "\n>")
        ), 3000)}}));
    }
    blocks.extend([
        json!({"type": "section", "fields": fields}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": fit(&format!("*Reason*\n>{}", escape(&r.reason).replace('\n', "\n>")), 3000)}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
            "{} · requested {} · {}",
            escape(&truncate(description, 300)),
            slack_date(r.created_at),
            r.requester_email
        )}]}),
        json!({"type": "section", "block_id": format!("status:{id}"), "text": {"type": "mrkdwn", "text": fit(&status, 3000)}}),
    ]);
    if r.state == RequestState::Pending && card.break_glass {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
            "Break-glass allowed: the requester may approve alone with *Break glass* or `/jit break-glass {id} <reason>` (announced, flagged for review)."
        )}]}));
    }
    if r.state == RequestState::Pending {
        let mut elements = vec![
            json!({"type": "button", "action_id": "approve", "value": id.to_string(), "style": "primary",
             "text": {"type": "plain_text", "text": "Approve", "emoji": true}}),
            json!({"type": "button", "action_id": "deny", "value": id.to_string(), "style": "danger",
             "text": {"type": "plain_text", "text": "Deny", "emoji": true}}),
        ];
        if card.break_glass {
            elements.push(json!({"type": "button", "action_id": "break_glass", "value": id.to_string(),
                "text": {"type": "plain_text", "text": "Break glass (requester)", "emoji": true}}));
        }
        blocks.push(json!({"type": "actions", "block_id": format!("decide:{id}"), "elements": elements}));
    }
    let marker = if r.break_glass_reason.is_some() { "BREAK-GLASS " } else { "" };
    let text = match r.extends {
        Some(parent) => format!(
            "{marker}Access request #{id}: {} asks to extend {} (request #{}) by {} — {}",
            mention(r.requester.user_id()),
            r.role,
            parent.get(),
            r.duration,
            r.state.describe()
        ),
        None => format!(
            "{marker}Access request #{id}: {} asks for {} for {} — {}",
            mention(r.requester.user_id()),
            r.role,
            r.duration,
            r.state.describe()
        ),
    };
    Message { text, blocks }
}

fn requester_dm(kind: NoticeKind, r: &AccessRequest, approvals: &[Approval]) -> Option<Message> {
    if let Some(parent) = r.extends {
        return extension_dm(kind, r, parent.get(), approvals);
    }
    let id = r.id.get();
    let text = match kind {
        NoticeKind::Granted => format!(
            ":white_check_mark: Your `{}` access (request #{id}) is active until {}. {}. Done early? `/jit revoke {id}`",
            r.role,
            r.expires_at.map(slack_date).unwrap_or_default(),
            approved_by(r, approvals)
        ),
        NoticeKind::TimedOut => format!(
            ":hourglass: Your request #{id} for `{}` timed out: {}. Ask again with `/jit request` if you still need it.",
            r.role,
            escape(r.state_detail.as_deref().unwrap_or("nobody decided in time"))
        ),
        NoticeKind::Denied => {
            let by = approvers(approvals, Decision::Deny).join(", ");
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
        // Cancelled by someone else (the requester's own cancel needs no DM).
        NoticeKind::Cancelled => match &r.state_detail {
            Some(why) => format!(
                ":no_entry_sign: Your request #{id} for `{}` was cancelled: {}",
                r.role,
                escape(&truncate(why, 1000))
            ),
            None => return None,
        },
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

/// The requester's DMs about an extension request.
fn extension_dm(kind: NoticeKind, r: &AccessRequest, parent: i64, approvals: &[Approval]) -> Option<Message> {
    let id = r.id.get();
    let detail = |fallback: &str| escape(&truncate(r.state_detail.as_deref().unwrap_or(fallback), 1000));
    let text = match kind {
        NoticeKind::Approved | NoticeKind::AutoApproved | NoticeKind::BreakGlass => format!(
            ":white_check_mark: Your `{}` access (request #{parent}) is extended by {}, until {}. {}.",
            r.role,
            r.duration,
            r.expires_at.map(slack_date).unwrap_or_default(),
            approved_by(r, approvals)
        ),
        NoticeKind::Denied => {
            let by = approvers(approvals, Decision::Deny).join(", ");
            let why =
                r.state_detail.as_deref().map(|d| format!(": {}", escape(&truncate(d, 1000)))).unwrap_or_default();
            format!(
                ":x: Your extension #{id} of `{}` (request #{parent}) was denied by {by}{why}. Your access still ends as planned.",
                r.role
            )
        }
        NoticeKind::TimedOut => format!(
            ":hourglass: Your extension #{id} of `{}` (request #{parent}) timed out: {}.",
            r.role,
            detail("nobody decided in time")
        ),
        NoticeKind::Cancelled if r.state_detail.is_some() => format!(
            ":no_entry_sign: Your extension #{id} of `{}` (request #{parent}) was cancelled: {}.",
            r.role,
            detail("")
        ),
        _ => return None,
    };
    Some(Message::plain(text))
}

/// The DM shortly before access ends: extend it (a duration choice) or end
/// it now.
pub struct ExpiryWarningDm<'a> {
    /// The live request.
    pub request: &'a AccessRequest,
    /// The extensions its role allows (shortest first).
    pub choices: &'a [AccessDuration],
}

impl ExpiryWarningDm<'_> {
    /// Renders the DM.
    pub fn render(&self) -> Message {
        let r = self.request;
        let id = r.id.get();
        let until = r.expires_at.map(slack_date).unwrap_or_default();
        let text = format!(":hourglass: Your `{}` access (request #{id}) ends {until}. Need more time?", r.role);
        let options: Vec<Value> = self
            .choices
            .iter()
            .take(100)
            .map(|d| {
                json!({"text": {"type": "plain_text", "text": format!("+{d}")}, "value": format!("{id}:{}", d.get().as_secs())})
            })
            .collect();
        let mut elements = Vec::new();
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
        Message {
            blocks: vec![
                json!({"type": "section", "text": {"type": "mrkdwn", "text": text.clone()}}),
                json!({"type": "actions", "block_id": format!("expiry:{id}"), "elements": elements}),
                json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
                    "An extension goes through the role's policy: auto-approved when allowed, otherwise the approvers decide. Or `/jit extend {id} 1h <reason>`."
                )}]}),
            ],
            text,
        }
    }
}

fn audit_line(kind: NoticeKind, r: &AccessRequest, approvals: &[Approval]) -> Option<Message> {
    let who = mention(r.requester.user_id());
    let id = r.id.get();
    if let Some(parent) = r.extends {
        let what = format!("#{id} {who} `{}`: extension of #{} by {}", r.role, parent.get(), r.duration);
        let text = match kind {
            NoticeKind::Approved | NoticeKind::AutoApproved => {
                format!("{what}: {}", lower_first(&approved_by(r, approvals)))
            }
            NoticeKind::BreakGlass => format!(
                ":rotating_light: BREAK-GLASS {what}: approved by the requester alone: {}. Flagged for review.",
                escape(&truncate(r.break_glass_reason.as_deref().unwrap_or(""), 1000))
            ),
            NoticeKind::Denied => format!("{what}: denied by {}", approvers(approvals, Decision::Deny).join(", ")),
            _ => return None,
        };
        return Some(Message::plain(text));
    }
    let text = match kind {
        NoticeKind::Approved => format!(
            "#{id} {who} `{}` for {}: approved by {}",
            r.role,
            r.duration,
            approvers(approvals, Decision::Approve).join(", ")
        ),
        NoticeKind::Denied => {
            format!("#{id} {who} `{}`: denied by {}", r.role, approvers(approvals, Decision::Deny).join(", "))
        }
        NoticeKind::Granted => format!("#{id} {who} `{}`: granted", r.role),
        NoticeKind::AutoApproved => format!(
            "#{id} {who} `{}` for {}: auto-approved ({})",
            r.role,
            r.duration,
            escape(r.auto_approved.as_deref().unwrap_or(""))
        ),
        NoticeKind::BreakGlass => format!(
            ":rotating_light: BREAK-GLASS #{id} {who} `{}` for {}: approved by the requester alone: {}. Flagged for review.",
            r.role,
            r.duration,
            escape(&truncate(r.break_glass_reason.as_deref().unwrap_or(""), 1000))
        ),
        NoticeKind::TimedOut => format!("#{id} {who} `{}`: timed out (nobody decided)", r.role),
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
    fn tickets_link_to_the_tracker_with_the_id_encoded() {
        let url = Some("https://jira.example.com/browse/{ticket}");
        assert_eq!(ticket_text("INC-42", url), "<https://jira.example.com/browse/INC-42|INC-42>");
        assert_eq!(ticket_text("a|b>c", url), "<https://jira.example.com/browse/a%7Cb%3Ec|a|b&gt;c>");
        assert_eq!(ticket_text("INC-42", None), "INC-42");
    }

    #[test]
    fn dates_render_for_each_readers_zone_with_a_utc_fallback() {
        let t = Timestamp::parse_rfc3339("2026-01-01T00:30:00Z").unwrap();
        assert_eq!(slack_date(t), "<!date^1767227400^{date_short_pretty} at {time}|2026-01-01 00:30 UTC>");
    }
}
