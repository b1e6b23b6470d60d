//! Content digests (`sha256:` + 64 lowercase hex), the only identity sluice trusts for an image.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ParseError;

/// A manifest digest such as `sha256:9f86…`. Tags move; digests do not, so every
/// desired and actual state in sluice is a `Digest`, never a tag.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parses `sha256:` followed by exactly 64 lowercase hex characters.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let err = |reason: &str| ParseError::new("digest", input, reason);
        let hex = input
            .strip_prefix("sha256:")
            .ok_or_else(|| err("must start with `sha256:`"))?;
        if hex.len() != 64 {
            return Err(err("must have exactly 64 hex characters after `sha256:`"));
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(err("hex part must be lowercase `0-9a-f`"));
        }
        Ok(Self(input.to_owned()))
    }

    /// The digest of `bytes` (what a registry reports for a manifest it serves).
    pub fn of_bytes(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Self(format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(bytes))
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex characters, for people (tables, log lines).
    pub fn short(&self) -> &str {
        &self.0[7..19]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

impl FromStr for Digest {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn valid_digests_round_trip(hex in "[0-9a-f]{64}") {
            let text = format!("sha256:{hex}");
            let d = Digest::parse(&text).unwrap();
            prop_assert_eq!(d.to_string(), text.clone());
            let json = serde_json::to_string(&d).unwrap();
            prop_assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        }

        #[test]
        fn garbage_is_rejected(s in "\\PC*") {
            prop_assume!(!(s.starts_with("sha256:") && s.len() == 71
                && s[7..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))));
            let e = Digest::parse(&s).unwrap_err();
            prop_assert!(e.to_string().contains("invalid digest"));
        }
    }

    #[test]
    fn uppercase_and_short_digests_name_the_problem() {
        let upper = format!("sha256:{}", "A".repeat(64));
        assert!(
            Digest::parse(&upper)
                .unwrap_err()
                .to_string()
                .contains("lowercase")
        );
        assert!(
            Digest::parse("sha256:abc")
                .unwrap_err()
                .to_string()
                .contains("64 hex")
        );
        assert!(
            Digest::parse("md5:abc")
                .unwrap_err()
                .to_string()
                .contains("sha256:")
        );
    }

    #[test]
    fn of_bytes_matches_known_vector() {
        assert_eq!(
            Digest::of_bytes(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
