//! `[policy]`: rules that are not per role.

use std::collections::BTreeSet;

use serde::Deserialize;

/// `[policy]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// IdP groups whose members may revoke anyone's grant.
    #[serde(default)]
    pub admin_groups: BTreeSet<String>,
    /// IdP groups whose members may read the access report
    /// (`/report.json`, `/report.csv`) after signing in; administrators may too.
    #[serde(default)]
    pub auditor_groups: BTreeSet<String>,
}
