//! `EmailAddress`: a mailbox a notification may be sent to (a workspace's `contacts`,
//! `[email] from` and `admins`). Parsed at the edge; only the plain `local@domain` form
//! (no display name, no comments, no quoted local part), which every SMTP server takes.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ParseError;

/// A checked `local@domain` address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

/// Characters a dot-atom local part may hold besides letters and digits (RFC 5322).
const LOCAL_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~.";

impl EmailAddress {
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let err = |reason: &str| ParseError::new("email address", input, reason);
        if input.len() > 254 {
            return Err(err("must be at most 254 characters"));
        }
        let Some((local, domain)) = input.rsplit_once('@') else {
            return Err(err("expected local@domain"));
        };
        if local.is_empty() || local.len() > 64 {
            return Err(err("the part before `@` must be 1-64 characters"));
        }
        if !local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(c))
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
        {
            return Err(err(
                "the part before `@` must be letters, digits and `.!#$%&'*+-/=?^_`{|}~`",
            ));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if labels.len() < 2 || !labels.iter().all(label_ok) {
            return Err(err(
                "the domain must be a host name with a dot, e.g. example.com",
            ));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}

impl From<EmailAddress> for String {
    fn from(a: EmailAddress) -> Self {
        a.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::EmailAddress;

    #[test]
    fn plain_addresses_pass_and_the_rest_is_refused() {
        for ok in [
            "ops@example.com",
            "a.b+tag@mail.example.org",
            "x@localhost.localdomain",
        ] {
            assert_eq!(EmailAddress::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "no-at",
            "@example.com",
            "a@",
            "a@localhost",
            "a b@example.com",
            "a@exa mple.com",
            "Name <a@example.com>",
            "a..b@example.com",
            "a@-x.com",
            "a@x.com\r\nBcc: b@y.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn serde_parses_at_the_edge() {
        let ok: Vec<EmailAddress> = serde_json::from_str(r#"["t@example.com"]"#).unwrap();
        assert_eq!(ok[0].to_string(), "t@example.com");
        let e = serde_json::from_str::<Vec<EmailAddress>>(r#"["nope"]"#).unwrap_err();
        assert!(
            e.to_string().contains("invalid email address `nope`"),
            "{e}"
        );
    }
}
