//! Pure types and rules of jitbot: identifiers, instants and durations,
//! the access-request state machine and policy evaluation.
//!
//! Nothing in here performs I/O or reads the clock: every function that needs
//! the current time takes `now` as an argument, so the rules are tested by
//! passing instants rather than by sleeping.

pub mod audit_key;
pub mod aws;
pub mod command;
pub mod ids;
pub mod login;
pub mod policy;
pub mod request;
pub mod state;
pub mod time;
pub mod token;

pub use audit_key::{AuditKey, AuditTag};
pub use ids::{RequestId, RoleName, SlackUser};
pub use login::{LoginName, LoginTemplate, PgRoleName};
pub use policy::{AutoApproval, AutoApproveRule, Identity, PolicyError, RolePolicy, TicketPattern};
pub use request::{AccessRequest, Approval, Decision};
pub use state::RequestState;
pub use time::{AccessDuration, Timestamp};
pub use token::{hash_token, random_token, token_digest};
