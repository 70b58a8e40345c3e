//! The `jitbot` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_env("JITBOT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // `JITBOT_LOG_FORMAT=json`: one JSON object per line, with the current
    // span's fields (a Slack delivery's or a job's request id) on each event,
    // for log pipelines that parse rather than grep.
    match std::env::var("JITBOT_LOG_FORMAT").as_deref() {
        Ok("json") => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        Ok("text") | Err(std::env::VarError::NotPresent) => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init()
        }
        Ok(other) => {
            eprintln!("error: JITBOT_LOG_FORMAT must be \"text\" or \"json\", not {other:?}");
            return ExitCode::from(2);
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            eprintln!("error: JITBOT_LOG_FORMAT must be \"text\" or \"json\"");
            return ExitCode::from(2);
        }
    }
    jitbot::cli::run(jitbot::cli::Cli::parse()).await
}
