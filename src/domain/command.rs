//! The `/jit` command grammar, independent of how the text arrived.
//!
//! ```text
//! /jit request <role> [duration] <reason...>
//! /jit request [role]            (opens the request form)
//! /jit break-glass <id> <reason...>
//! /jit list | revoke <id> | cancel <id> | whoami | help
//! ```

use super::ids::RequestId;
use super::time::AccessDuration;

/// A parsed `/jit` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JitCommand {
    /// Ask for a role.
    Request {
        /// The role name as typed.
        role: String,
        /// The duration, when given.
        duration: Option<AccessDuration>,
        /// Why.
        reason: String,
    },
    /// Open the request form (the role chosen, if given).
    RequestForm {
        /// The role as typed, if any.
        role: Option<String>,
    },
    /// Show my requests: pending, active, recent.
    List,
    /// Show the requests waiting for my decision, with buttons.
    Pending,
    /// End access early.
    Revoke(RequestId),
    /// Withdraw a pending request.
    Cancel(RequestId),
    /// Run a failing revocation again now (administrators).
    Retry(RequestId),
    /// Ask for more time on live access.
    Extend {
        /// The request whose access should last longer.
        id: RequestId,
        /// How much longer (the role's default when not given).
        duration: Option<AccessDuration>,
        /// Why (the original reason when not given).
        reason: Option<String>,
    },
    /// Approve my own request alone (roles with `break_glass = true`).
    BreakGlass {
        /// The request.
        id: RequestId,
        /// Why this cannot wait for approvers.
        reason: String,
    },
    /// Kill switch: revoke every grant and cancel every pending request
    /// (administrators; asks for confirmation first).
    RevokeAll {
        /// Why (required).
        reason: String,
    },
    /// Release the kill switch so approvals grant again (administrators).
    Unfreeze {
        /// Why granting may resume (required).
        reason: String,
    },
    /// Show my identity link.
    Whoami,
    /// Link my Slack account to the IdP.
    Link,
    /// Remove my link. Without `confirm`, a person with live access is
    /// told what would end and asked to confirm.
    Unlink {
        /// `/jit unlink confirm`: end that access and unlink.
        confirm: bool,
    },
    /// Explain the commands.
    Help,
}

/// Usage lines, shown with every grammar error.
pub const USAGE: &str = "`/jit request` ask for access in a form, or at once: `/jit request <role> [duration] <reason>`, e.g. `/jit request prod-db-readonly 30m debugging INC-4821`\n\
`/jit list` your requests: pending, active, recent\n\
`/jit pending` requests waiting for your approval, with buttons\n\
`/jit revoke <id>` end access early (I'm done)\n\
`/jit extend <id> [duration] [reason]` ask for more time on live access\n\
`/jit cancel <id>` withdraw a pending request\n\
`/jit retry <id>` administrators: run a failing revocation again now\n\
`/jit break-glass <id> <reason>` approve your own request in an emergency (only roles that allow it; announced and reviewed)\n\
`/jit revoke-all <reason>` administrators: revoke all access in an incident (asks to confirm; nothing is granted until released)\n\
`/jit unfreeze <reason>` administrators: release the kill switch so approvals grant again\n\
`/jit link` sign in with your company account\n\
`/jit whoami` your linked identity and groups\n\
`/jit unlink` remove your link (your access and pending requests end with it; `/jit unlink confirm` after you saw what)\n\
`/jit help` this help";

/// Why the text is not a command; the message is for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(pub String);

fn looks_like_duration(token: &str) -> bool {
    token.chars().next().is_some_and(|c| c.is_ascii_digit()) && token.chars().any(|c| c.is_ascii_alphabetic())
}

fn request_id(word: &str, rest: &[&str]) -> Result<RequestId, CommandError> {
    match rest {
        [id] => RequestId::parse(id).ok_or_else(|| {
            CommandError(format!("{id:?} is not a request number. Usage: `/jit {word} <id>`, e.g. `/jit {word} 12`"))
        }),
        _ => Err(CommandError(format!("Usage: `/jit {word} <id>`, e.g. `/jit {word} 12`"))),
    }
}

/// Parses the text after `/jit`.
pub fn parse(text: &str) -> Result<JitCommand, CommandError> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let Some((first, rest)) = words.split_first() else { return Ok(JitCommand::Help) };
    match first.to_ascii_lowercase().as_str() {
        "help" | "?" => Ok(JitCommand::Help),
        "list" | "ls" => Ok(JitCommand::List),
        "pending" | "approvals" => Ok(JitCommand::Pending),
        "whoami" => Ok(JitCommand::Whoami),
        "link" | "login" => Ok(JitCommand::Link),
        "unlink" => match rest {
            [] => Ok(JitCommand::Unlink { confirm: false }),
            [word] if word.eq_ignore_ascii_case("confirm") => Ok(JitCommand::Unlink { confirm: true }),
            _ => Err(CommandError(
                "Usage: `/jit unlink`, then `/jit unlink confirm` to end your access and unlink".into(),
            )),
        },
        "revoke" | "done" => request_id("revoke", rest).map(JitCommand::Revoke),
        "cancel" => request_id("cancel", rest).map(JitCommand::Cancel),
        "retry" => request_id("retry", rest).map(JitCommand::Retry),
        "revoke-all" | "revokeall" => {
            let reason = rest.join(" ");
            if reason.is_empty() {
                return Err(CommandError(
                    "Say why: `/jit revoke-all <reason>`, e.g. `/jit revoke-all credentials leaked, INC-4821`".into(),
                ));
            }
            Ok(JitCommand::RevokeAll { reason })
        }
        "unfreeze" => {
            let reason = rest.join(" ");
            if reason.is_empty() {
                return Err(CommandError(
                    "Say why granting may resume: `/jit unfreeze <reason>`, e.g. `/jit unfreeze keys rotated, INC-4821 closed`"
                        .into(),
                ));
            }
            Ok(JitCommand::Unfreeze { reason })
        }
        "extend" => {
            let usage =
                "Usage: `/jit extend <id> [duration] [reason]`, e.g. `/jit extend 12 1h migration still running`";
            let Some((id, rest)) = rest.split_first() else { return Err(CommandError(usage.into())) };
            let id =
                RequestId::parse(id).ok_or_else(|| CommandError(format!("{id:?} is not a request number. {usage}")))?;
            let (duration, rest) = match rest.split_first() {
                Some((d, tail)) if looks_like_duration(d) => {
                    (Some(AccessDuration::parse(d).map_err(CommandError)?), tail)
                }
                _ => (None, rest),
            };
            let reason = Some(rest.join(" ")).filter(|r| !r.is_empty());
            Ok(JitCommand::Extend { id, duration, reason })
        }
        "break-glass" | "breakglass" => {
            let usage =
                "Usage: `/jit break-glass <id> <reason>`, e.g. `/jit break-glass 12 primary down, no approver answers`";
            let Some((id, reason)) = rest.split_first() else { return Err(CommandError(usage.into())) };
            let id =
                RequestId::parse(id).ok_or_else(|| CommandError(format!("{id:?} is not a request number. {usage}")))?;
            let reason = reason.join(" ");
            if reason.is_empty() {
                return Err(CommandError(format!("Break-glass needs a reason. {usage}")));
            }
            Ok(JitCommand::BreakGlass { id, reason })
        }
        "request" | "req" => {
            let Some((role, rest)) = rest.split_first() else { return Ok(JitCommand::RequestForm { role: None }) };
            if rest.is_empty() {
                return Ok(JitCommand::RequestForm { role: Some(role.to_string()) });
            }
            let (duration, rest) = match rest.split_first() {
                Some((d, tail)) if looks_like_duration(d) => {
                    (Some(AccessDuration::parse(d).map_err(CommandError)?), tail)
                }
                _ => (None, rest),
            };
            let reason = rest.join(" ");
            if reason.is_empty() {
                return Err(CommandError(format!(
                    "Please say why you need {role}: `/jit request {role} [duration] <reason>`"
                )));
            }
            Ok(JitCommand::Request { role: role.to_string(), duration, reason })
        }
        other => Err(CommandError(format!("I don't know `{other}`. Here is what I understand:\n{USAGE}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_with_and_without_duration() {
        assert_eq!(
            parse("request prod-db-readonly 30m debugging INC-4821").unwrap(),
            JitCommand::Request {
                role: "prod-db-readonly".into(),
                duration: Some(AccessDuration::parse("30m").unwrap()),
                reason: "debugging INC-4821".into()
            }
        );
        assert_eq!(
            parse("  request   prod-db-readonly fixing  the thing ").unwrap(),
            JitCommand::Request { role: "prod-db-readonly".into(), duration: None, reason: "fixing the thing".into() }
        );
        assert!(parse("request prod 10s because").unwrap_err().0.contains("too short"));
        assert!(parse("request prod 30m").unwrap_err().0.contains("say why"));
        assert_eq!(parse("request").unwrap(), JitCommand::RequestForm { role: None });
        assert_eq!(parse("request prod").unwrap(), JitCommand::RequestForm { role: Some("prod".into()) });
    }

    #[test]
    fn other_commands_parse() {
        assert_eq!(parse("").unwrap(), JitCommand::Help);
        assert_eq!(parse("list").unwrap(), JitCommand::List);
        assert_eq!(parse("pending").unwrap(), JitCommand::Pending);
        assert_eq!(parse("revoke #12").unwrap(), JitCommand::Revoke(RequestId::new(12)));
        assert_eq!(parse("cancel 3").unwrap(), JitCommand::Cancel(RequestId::new(3)));
        assert_eq!(parse("retry #4").unwrap(), JitCommand::Retry(RequestId::new(4)));
        assert!(parse("revoke twelve").unwrap_err().0.contains("not a request number"));
        assert_eq!(
            parse("break-glass #4 primary is down").unwrap(),
            JitCommand::BreakGlass { id: RequestId::new(4), reason: "primary is down".into() }
        );
        assert!(parse("break-glass 4").unwrap_err().0.contains("needs a reason"));
        assert!(parse("break-glass").unwrap_err().0.contains("Usage"));
        assert_eq!(
            parse("extend 12 1h still migrating").unwrap(),
            JitCommand::Extend {
                id: RequestId::new(12),
                duration: Some(AccessDuration::parse("1h").unwrap()),
                reason: Some("still migrating".into())
            }
        );
        assert_eq!(
            parse("extend 12").unwrap(),
            JitCommand::Extend { id: RequestId::new(12), duration: None, reason: None }
        );
        assert!(parse("extend soon").unwrap_err().0.contains("not a request number"));
        assert_eq!(parse("revoke-all leaked keys").unwrap(), JitCommand::RevokeAll { reason: "leaked keys".into() });
        assert!(parse("revoke-all").unwrap_err().0.contains("Say why"));
        assert!(parse("frobnicate").unwrap_err().0.contains("I don't know `frobnicate`"));
    }
}

#[cfg(test)]
#[path = "command_proptests.rs"]
mod proptests;
