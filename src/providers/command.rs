//! The `command` provider: runs a configured program for each grant and
//! revocation (kubectl, a cloud CLI, a script), or once for a one-shot
//! action.
//!
//! The program is started directly with an argument list, never through a
//! shell, so nothing in a request can become shell syntax. It does not
//! inherit jitbot's environment (which holds jitbot's own secrets): it gets
//! `PATH`, `HOME`, `LANG`, the provider's `env` table and the request's
//! facts:
//!
//! | variable | value |
//! | --- | --- |
//! | `JITBOT_ACTION` | `grant`, `revoke`, or `run` (a one-shot action) |
//! | `JITBOT_REQUEST_ID` | the request number |
//! | `JITBOT_ROLE` | the role name |
//! | `JITBOT_USER_EMAIL` | the requester's verified email |
//! | `JITBOT_USER_SUBJECT` | the requester's IdP subject |
//! | `JITBOT_SLACK_ID` | the requester's Slack user id |
//! | `JITBOT_EXPIRES_AT` | when access ends, RFC 3339 UTC |
//!
//! Exit status 0 is success; anything else, a signal or the timeout is a
//! failure (the program's whole process group is killed on timeout).
//! Standard output and error are captured, cut to [`OUTPUT_LIMIT`] bytes
//! each, and recorded in the audit trail.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::spec::GrantSpec;
use super::{ApprovedGrant, GrantTarget, Provider, ProviderError, ProviderReport};
use crate::config::{CommandProviderConfig, Secret};
use crate::domain::Timestamp;

/// Bytes kept of each of standard output and standard error.
pub const OUTPUT_LIMIT: usize = 4096;

/// How long to keep reading output after the program exited (a child it
/// left behind may hold the pipes open).
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Runs programs.
pub struct CommandProvider {
    grant_command: Vec<String>,
    revoke_command: Option<Vec<String>>,
    timeout: Duration,
    env: BTreeMap<String, Secret>,
}

impl CommandProvider {
    /// Builds the provider from its config.
    pub fn new(config: &CommandProviderConfig) -> Self {
        Self {
            grant_command: config.grant_command.clone(),
            revoke_command: config.revoke_command.clone(),
            timeout: config.timeout,
            env: config.env.clone(),
        }
    }

    async fn run(&self, action: &str, argv: &[String], target: &GrantTarget) -> Result<ProviderReport, ProviderError> {
        let Some((program, args)) = argv.split_first() else {
            return Err(ProviderError::permanent(format!("no {action} command is configured")));
        };
        let extra = match &target.spec {
            Some(GrantSpec::Command(c)) => c.args.clone(),
            _ => Vec::new(),
        };
        let mut cmd = Command::new(program);
        cmd.args(args)
            .args(&extra)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for var in ["PATH", "HOME", "LANG"] {
            if let Ok(v) = std::env::var(var) {
                cmd.env(var, v);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v.expose());
        }
        cmd.env("JITBOT_ACTION", action)
            .env("JITBOT_REQUEST_ID", target.request_id.get().to_string())
            .env("JITBOT_ROLE", target.role.as_str())
            .env("JITBOT_USER_EMAIL", &target.user.email)
            .env("JITBOT_USER_SUBJECT", &target.user.subject)
            .env("JITBOT_SLACK_ID", &target.user.slack_id)
            .env("JITBOT_EXPIRES_AT", target.expires_at.to_string());
        // Its own process group, so a timeout kills whatever it started too.
        #[cfg(unix)]
        cmd.process_group(0);

        let mut child = cmd.spawn().map_err(|e| ProviderError {
            message: format!("cannot start {program}: {e}"),
            retryable: false,
            output: None,
        })?;
        let stdout = child.stdout.take().map(|s| tokio::spawn(read_capped(s, OUTPUT_LIMIT)));
        let stderr = child.stderr.take().map(|s| tokio::spawn(read_capped(s, OUTPUT_LIMIT)));
        let status = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(Ok(status)) => Some(status),
            Ok(Err(e)) => {
                return Err(ProviderError::retryable(format!("waiting for {program} failed: {e}")));
            }
            Err(_) => {
                kill_group(&mut child).await;
                None
            }
        };
        let output = format_output(collect(stdout).await, collect(stderr).await);
        let name = program.rsplit('/').next().unwrap_or(program);
        match status {
            Some(s) if s.success() => {
                Ok(ProviderReport { output, notes: vec![format!("{name} exited with status 0")] })
            }
            Some(s) => Err(ProviderError {
                message: match s.code() {
                    Some(code) => format!("{action} command {name} exited with status {code}{}", last_line(&output)),
                    None => format!("{action} command {name} was killed by a signal{}", last_line(&output)),
                },
                retryable: true,
                output,
            }),
            None => Err(ProviderError {
                message: format!(
                    "{action} command {name} did not finish within {} and was killed",
                    humantime::format_duration(self.timeout)
                ),
                retryable: true,
                output,
            }),
        }
    }
}

#[cfg(unix)]
async fn kill_group(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: killpg only sends a signal; `pid` is our child's process
        // group id (it was started with process_group(0)) and it has not been
        // reaped yet, so the id cannot have been reused.
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
    }
    let _ = child.kill().await;
}

#[cfg(not(unix))]
async fn kill_group(child: &mut tokio::process::Child) {
    let _ = child.kill().await;
}

/// Reads a pipe to its end, keeping at most `cap` bytes (the rest is read
/// and dropped, so a chatty program never blocks on a full pipe).
async fn read_capped<R: AsyncRead + Unpin>(mut r: R, cap: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
    (kept, truncated)
}

async fn collect(task: Option<tokio::task::JoinHandle<(Vec<u8>, bool)>>) -> (String, bool) {
    let Some(mut task) = task else { return (String::new(), false) };
    match tokio::time::timeout(DRAIN_GRACE, &mut task).await {
        Ok(Ok((bytes, truncated))) => (String::from_utf8_lossy(&bytes).into_owned(), truncated),
        _ => {
            task.abort();
            (String::new(), true)
        }
    }
}

fn format_output((stdout, out_cut): (String, bool), (stderr, err_cut): (String, bool)) -> Option<String> {
    let mark = |cut: bool| if cut { "\n[output truncated]" } else { "" };
    let mut text = String::new();
    if !stdout.trim().is_empty() {
        text.push_str(stdout.trim_end());
        text.push_str(mark(out_cut));
    }
    if !stderr.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str("[stderr]\n");
        text.push_str(stderr.trim_end());
        text.push_str(mark(err_cut));
    }
    (!text.is_empty()).then_some(text)
}

/// `": <last line>"` of the output, for error messages people read first.
fn last_line(output: &Option<String>) -> String {
    output
        .as_deref()
        .and_then(|o| o.lines().rev().find(|l| !l.trim().is_empty() && !l.starts_with('[')))
        .map(|l| format!(": {}", l.chars().take(300).collect::<String>()))
        .unwrap_or_default()
}

#[async_trait]
impl Provider for CommandProvider {
    async fn grant(&self, grant: &ApprovedGrant, _now: Timestamp) -> Result<ProviderReport, ProviderError> {
        let action = if grant.target().is_one_shot() { "run" } else { "grant" };
        self.run(action, &self.grant_command, grant.target()).await
    }

    async fn revoke(&self, target: &GrantTarget, _now: Timestamp) -> Result<ProviderReport, ProviderError> {
        if target.is_one_shot() {
            return Ok(ProviderReport::note("one-shot action: nothing to revoke"));
        }
        match &self.revoke_command {
            Some(argv) => self.run("revoke", argv, target).await,
            None => Err(ProviderError::retryable("no revoke_command is configured for this provider")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_is_capped_and_marked() {
        let data = vec![b'x'; 10_000];
        let (kept, cut) = read_capped(&data[..], 100).await;
        assert_eq!(kept.len(), 100);
        assert!(cut);
        let out = format_output(("ok\n".into(), false), ("warn\n".into(), true)).unwrap();
        assert_eq!(out, "ok\n[stderr]\nwarn\n[output truncated]");
        assert_eq!(format_output((" \n".into(), false), (String::new(), false)), None);
        assert_eq!(last_line(&Some("a\nboom\n[stderr]".into())), ": boom");
    }
}
