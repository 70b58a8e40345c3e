//! Proofs of authority. The use cases that only an administrator may run
//! (the kill switch and its release, retrying a revocation, ending someone
//! else's access) take an [`AdminProof`], and deciding a request goes
//! through a [`Decider`]: values that only this module's checks (or the
//! explicit [`Service::operator`]) make, so a new caller cannot reach such
//! a use case without the check having run.

use super::Service;
use crate::audit::Actor;
use crate::domain::{AccessRequest, Identity};

/// Proof that `actor` may use jitbot's administrator powers: a member of
/// `policy.admin_groups` checked with groups as fresh as an approver's
/// ([`Service::check_admin`]), or an operator on the command line
/// ([`Service::operator`]). Only the service makes one.
///
/// ```compile_fail
/// let forged = jitbot::service::AdminProof { actor: jitbot::audit::Actor::System };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminProof {
    actor: Actor,
}

impl AdminProof {
    pub(super) fn new(actor: Actor) -> Self {
        Self { actor }
    }

    /// Who holds it, as the audit trail names them.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }
}

impl Service {
    /// The proof of an operator on the command line, named `name` (the OS
    /// user). No check: the command line is trusted, it holds the config
    /// and the database (whoever runs it could change either directly).
    pub fn operator(name: &str) -> AdminProof {
        AdminProof::new(Actor::Cli(name.to_owned()))
    }
}

/// Proof that a person may decide a pending request now: the request, and
/// the decider's identity that the role's policy accepted as an approver
/// (checked again at decision time, since groups change). Made only by
/// `Service::check_decider`.
#[derive(Debug, Clone)]
pub(super) struct Decider {
    /// The request, read when the check ran.
    pub(super) request: AccessRequest,
    /// The approver's identity, with fresh groups.
    pub(super) identity: Identity,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_operator_is_named_as_in_the_trail() {
        let proof = Service::operator("oncall");
        assert_eq!(proof.actor(), &Actor::Cli("oncall".to_owned()));
        assert_eq!(proof.actor().to_string(), "cli:oncall");
    }
}
