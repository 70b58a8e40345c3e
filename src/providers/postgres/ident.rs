//! PostgreSQL names as jitbot handles them: quoting for the statements that
//! cannot take bind parameters (`GRANT`, `CREATE ROLE`, `ALTER ROLE`). The
//! safe shape a login made from an IdP claim must have, and the login
//! templates that make it, are pure rules in [`crate::domain::login`]
//! (re-exported here).
//!
//! Role statements take identifiers, not parameters, so every name is
//! quoted with [`quote_ident`] and every literal with [`quote_literal`]; on
//! top of that a login that comes from someone's identity must match a
//! conservative pattern, so a claim such as `x"; DROP ROLE postgres; --` is
//! refused before any SQL is built.

pub use crate::domain::login::{LoginName, LoginTemplate, MAX_NAME_BYTES, PgRoleName, check_role_name};

/// Quotes an identifier: wraps it in double quotes and doubles any double
/// quote inside, so any string is read back as exactly one identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal: single quotes around, inner single quotes
/// doubled. Safe with `standard_conforming_strings = on` (the default since
/// PostgreSQL 9.1); jitbot refuses backslashes anyway, so the result is the
/// same under either setting.
pub fn quote_literal(value: &str) -> Result<String, String> {
    if value.contains('\\') || value.contains('\0') {
        return Err("literal contains a backslash or NUL".to_owned());
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

impl PgRoleName {
    /// The quoted identifier.
    pub fn quoted(&self) -> String {
        quote_ident(self.as_str())
    }
}

impl LoginName {
    /// The quoted identifier.
    pub fn quoted(&self) -> String {
        quote_ident(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_so_they_stay_one_identifier() {
        assert_eq!(quote_ident("readonly"), r#""readonly""#);
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote_ident(r#"x"; DROP ROLE postgres; --"#), r#""x""; DROP ROLE postgres; --""#);
        assert_eq!(quote_ident("Mixed Case"), r#""Mixed Case""#);
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        assert!(quote_literal("a\\b").is_err());
    }
}
