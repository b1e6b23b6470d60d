//! Names that end up in file paths, container names and URLs: validated once, here.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ParseError;

macro_rules! string_newtype {
    ($ty:ident) => {
        impl $ty {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($ty), self.0)
            }
        }
        impl std::str::FromStr for $ty {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A workspace name: a lowercase DNS label (1–63 of `a-z0-9-`, not starting or ending
/// with `-`). It becomes the container name `sluice-<name>` and part of snapshot paths.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkspaceName(String);

impl WorkspaceName {
    /// What [`Self::parse`] accepts, as an ECMA-262 regular expression (OpenAPI).
    pub const PATTERN: &'static str = r"^(?!adopt$|adopt-all$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";

    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let err = |r: &str| ParseError::new("workspace name", input, r);
        if input.is_empty() || input.len() > 63 {
            return Err(err("must be 1 to 63 characters"));
        }
        if !input
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(err("may contain only lowercase letters, digits and `-`"));
        }
        if input.starts_with('-') || input.ends_with('-') {
            return Err(err("must not start or end with `-`"));
        }
        if input == "adopt" || input == "adopt-all" {
            return Err(err(
                "is reserved: `/api/v1/workspaces/adopt` and `adopt-all` adopt running containers",
            ));
        }
        Ok(Self(input.to_owned()))
    }

    /// The Docker container that runs this workspace.
    pub fn container_name(&self) -> String {
        format!("sluice-{}", self.0)
    }
}
string_newtype!(WorkspaceName);

/// A snapshot id: `^[A-Za-z0-9._-]+$`, at most 128 characters, never `.` or `..`.
/// It is a file name under the snapshot directory, so nothing that could walk out of it
/// is ever accepted.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotId(String);

impl SnapshotId {
    /// What [`Self::parse`] accepts, as an ECMA-262 regular expression (OpenAPI).
    pub const PATTERN: &'static str = r"^(?!\.\.?$)[A-Za-z0-9._-]{1,128}$";

    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let err = |r: &str| ParseError::new("snapshot id", input, r);
        if input.is_empty() || input.len() > 128 {
            return Err(err("must be 1 to 128 characters"));
        }
        if input == "." || input == ".." {
            return Err(err("must not be `.` or `..`"));
        }
        if !input
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(err("may contain only `A-Za-z0-9._-` (no `/`)"));
        }
        Ok(Self(input.to_owned()))
    }
}
string_newtype!(SnapshotId);

/// A Docker host's name in the fleet: 1 to 253 characters of lowercase letters, digits,
/// `-` and `.` (a hostname), not starting or ending with `-` or `.`. It is stored with every
/// workspace placed on the host and shown in metrics labels.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(String);

impl HostName {
    /// What [`Self::parse`] accepts, as an ECMA-262 regular expression (OpenAPI).
    pub const PATTERN: &'static str = r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$";

    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let err = |r: &str| ParseError::new("host name", input, r);
        if input.is_empty() || input.len() > 253 {
            return Err(err("must be 1 to 253 characters"));
        }
        if !input
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(err(
                "may contain only lowercase letters, digits, `-` and `.`",
            ));
        }
        let edge = |b: u8| b == b'-' || b == b'.';
        if input.bytes().next().is_some_and(edge) || input.bytes().last().is_some_and(edge) {
            return Err(err("must not start or end with `-` or `.`"));
        }
        Ok(Self(input.to_owned()))
    }

    /// The host of a single-host install, and of every workspace created before hosts.
    pub fn local() -> Self {
        Self("local".to_owned())
    }
}
string_newtype!(HostName);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn dns_labels_round_trip(s in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?") {
            let n = WorkspaceName::parse(&s).unwrap();
            prop_assert_eq!(n.as_str(), s.as_str());
            let json = serde_json::to_string(&n).unwrap();
            prop_assert_eq!(serde_json::from_str::<WorkspaceName>(&json).unwrap(), n);
        }

        #[test]
        fn host_names_round_trip(s in "[a-z0-9]([a-z0-9.-]{0,60}[a-z0-9])?") {
            let n = HostName::parse(&s).unwrap();
            prop_assert_eq!(n.as_str(), s.as_str());
        }

        #[test]
        fn names_with_other_characters_are_rejected(s in "[a-z]{0,5}[A-Z_./ ][a-z]{0,5}") {
            let e = WorkspaceName::parse(&s).unwrap_err();
            prop_assert!(e.to_string().contains("invalid workspace name"));
        }

        #[test]
        fn snapshot_ids_round_trip(s in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,100}") {
            let id = SnapshotId::parse(&s).unwrap();
            prop_assert_eq!(id.to_string(), s);
        }

        #[test]
        fn snapshot_ids_with_slashes_never_parse(a in "[a-z.]{0,8}", b in "[a-z.]{0,8}") {
            let s = format!("{a}/{b}");
            prop_assert!(SnapshotId::parse(&s).is_err());
        }
    }

    #[test]
    fn path_tricks_are_rejected() {
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            "/abs",
            "a b",
            "a\0b",
            "é",
            &"x".repeat(129),
        ] {
            let e = SnapshotId::parse(bad).unwrap_err();
            assert!(e.to_string().contains("invalid snapshot id"), "{bad:?}");
        }
        assert!(WorkspaceName::parse("-acme").is_err());
        assert!(WorkspaceName::parse(&"a".repeat(64)).is_err());
        assert_eq!(
            WorkspaceName::parse("acme").unwrap().container_name(),
            "sluice-acme"
        );
    }
}
