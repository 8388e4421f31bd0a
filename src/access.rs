//! Who may do what: the roles people have and the scopes of the tokens scripts use. The server
//! enforces these rules on every route; the browser uses the same ones to show only the
//! actions a person may take.

use serde::{Deserialize, Serialize};

/// What a person may do. Each role can do everything the roles below it can.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[cfg_attr(
    feature = "sqlx",
    derive(sqlx::Type),
    sqlx(type_name = "text", rename_all = "snake_case")
)]
pub enum Role {
    /// Reads jobs, follows the live feed, downloads outputs.
    Viewer,
    /// Also submits jobs and acts on them: cancel, retry, delete.
    Operator,
    /// Also manages accounts, and sees every token.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// A sentence for the admin page.
    pub fn describe(self) -> &'static str {
        match self {
            Role::Viewer => "reads jobs and downloads outputs",
            Role::Operator => "also submits jobs and cancels, retries and deletes them",
            Role::Admin => "also manages accounts",
        }
    }

    pub fn can_write(self) -> bool {
        self >= Role::Operator
    }
}

/// What a personal API token allows, on top of its owner's role (never beyond it).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[cfg_attr(
    feature = "sqlx",
    derive(sqlx::Type),
    sqlx(type_name = "text", rename_all = "snake_case")
)]
pub enum TokenScope {
    /// `GET` on `/api/*` and the live feed.
    Read,
    /// Also submitting and acting on jobs, as far as the owner's role allows.
    Write,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The role a request made with this token acts with.
    pub fn limit(self, owner: Role) -> Role {
        match self {
            TokenScope::Read => Role::Viewer,
            TokenScope::Write => owner,
        }
    }
}

/// The signed-in person, as the pages show them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewer {
    pub email: String,
    pub role: Role,
}

/// An email address as accounts use it: trimmed, with one `@` between a local part and a
/// domain with a dot, at most 254 characters.
pub fn normalize_email(email: &str) -> Result<String, &'static str> {
    let email = email.trim();
    let (local, domain) = email
        .split_once('@')
        .ok_or("Enter an email address, like ada@example.com.")?;
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !email.chars().any(char::is_whitespace)
        && email.len() <= 254;
    if ok {
        Ok(email.to_owned())
    } else {
        Err("Enter an email address, like ada@example.com.")
    }
}

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Whether a new password is long enough (length beats every other rule; NIST SP 800-63B).
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "Use at least {MIN_PASSWORD_CHARS} characters; a few words make a good password."
        ));
    }
    if password.len() > 1024 {
        return Err("That password is too long (over 1,024 bytes).".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_read_back() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
        assert!(Role::Operator.can_write() && !Role::Viewer.can_write());
        for &role in <Role as strum::VariantArray>::VARIANTS {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn a_read_token_never_writes_and_a_write_token_never_exceeds_its_owner() {
        assert_eq!(TokenScope::Read.limit(Role::Admin), Role::Viewer);
        assert_eq!(TokenScope::Write.limit(Role::Operator), Role::Operator);
        assert_eq!(TokenScope::Write.limit(Role::Viewer), Role::Viewer);
    }

    #[test]
    fn emails_are_trimmed_and_checked() {
        assert_eq!(
            normalize_email("  ada@example.com "),
            Ok("ada@example.com".into())
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_need_length() {
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("correct horse battery").is_ok());
    }
}
