//! Image references: `[registry/]repository[:tag][@digest]`, normalised the way Docker does.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Digest, ParseError};

/// The registry Docker assumes when a reference names none.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// A parsed image reference. Always normalised: the registry is explicit, Docker Hub
/// official images carry `library/`, and a reference with neither tag nor digest gets
/// the tag `latest` (what `docker pull` would do).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// Parses any reference Docker accepts (lowercase repository, optional tag and digest).
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let err = |reason: &str| ParseError::new("image reference", input, reason);
        if input.is_empty() {
            return Err(err("must not be empty"));
        }
        if input.len() > 512 {
            return Err(err("must be at most 512 characters"));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("must not contain whitespace"));
        }
        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => (n, Some(Digest::parse(d).map_err(|e| err(&e.reason))?)),
            None => (input, None),
        };
        // A tag is the part after the last ':' provided no '/' follows it
        // (a ':' before a '/' is a registry port).
        let (name, tag) = match name_tag.rfind(':') {
            Some(i) if !name_tag[i..].contains('/') => {
                (&name_tag[..i], Some(name_tag[i + 1..].to_owned()))
            }
            _ => (name_tag, None),
        };
        if let Some(t) = &tag {
            validate_tag(t).map_err(|r| err(&r))?;
        }
        let (registry, repository) = split_registry(name);
        if let Some(r) = registry {
            validate_registry(r).map_err(|reason| err(&reason))?;
        }
        validate_repository(repository).map_err(|r| err(&r))?;
        let registry = registry.unwrap_or(DEFAULT_REGISTRY).to_owned();
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_owned()
        };
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_owned()),
            _ => tag,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Parses a reference a workspace can *track*: it must name a tag and no digest, since
    /// a digest never changes and so there is nothing to watch.
    pub fn parse_tracked(input: &str) -> Result<Self, ParseError> {
        let r = Self::parse(input)?;
        if r.digest.is_some() {
            return Err(ParseError::new(
                "image reference",
                input,
                "a tracked image names a tag, not a digest (use `pinned_digest` to hold a digest)",
            ));
        }
        Ok(r)
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository pinned to `digest` (`registry/repo@sha256:…`): what sluice
    /// pulls and runs, so a moving tag can never change what a container runs.
    pub fn pinned(&self, digest: &Digest) -> Self {
        Self {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest.clone()),
        }
    }

    /// True for registries on the loopback (plain HTTP is allowed there by default).
    pub fn is_loopback_registry(&self) -> bool {
        let host = self
            .registry
            .rsplit_once(':')
            .map_or(self.registry.as_str(), |(h, _)| h);
        host == "localhost" || host.starts_with("127.") || host == "[::1]"
    }
}

fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn validate_registry(r: &str) -> Result<(), String> {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
        _ => (r, None),
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
    {
        return Err(format!("registry host `{host}` is not a valid host name"));
    }
    if let Some(p) = port
        && !p.parse::<u16>().is_ok_and(|n| n > 0)
    {
        return Err(format!(
            "registry port `{p}` must be a number from 1 to 65535"
        ));
    }
    Ok(())
}

fn validate_repository(repo: &str) -> Result<(), String> {
    if repo.is_empty() {
        return Err("repository must not be empty".into());
    }
    for component in repo.split('/') {
        let ok = !component.is_empty()
            && component.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && component.as_bytes()[0].is_ascii_alphanumeric()
            && component.as_bytes()[component.len() - 1].is_ascii_alphanumeric();
        if !ok {
            return Err(format!(
                "repository component `{component}` must be lowercase letters, digits and \
                 `.`, `_`, `-` separators, starting and ending with a letter or digit"
            ));
        }
    }
    Ok(())
}

fn validate_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && (tag.as_bytes()[0].is_ascii_alphanumeric() || tag.as_bytes()[0] == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag `{tag}` must be 1-128 of `A-Za-z0-9_.-`, not starting with `.` or `-`"
        ))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageRef({self})")
    }
}

impl FromStr for ImageRef {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ImageRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_like_docker() {
        let r = ImageRef::parse("nginx").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/nginx:latest");
        let r = ImageRef::parse("127.0.0.1:5000/acme/app:stable").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "acme/app");
        assert_eq!(r.tag(), Some("stable"));
        assert!(r.is_loopback_registry());
        let r = ImageRef::parse("localhost/app").unwrap();
        assert_eq!(r.registry(), "localhost");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("registry.example/acme/app@{d}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().as_str(), d);
        assert!(ImageRef::parse_tracked(&r.to_string()).is_err());
    }

    #[test]
    fn pinned_drops_the_tag() {
        let r = ImageRef::parse("127.0.0.1:5000/app:stable").unwrap();
        let d = Digest::parse(&format!("sha256:{}", "b".repeat(64))).unwrap();
        assert_eq!(r.pinned(&d).to_string(), format!("127.0.0.1:5000/app@{d}"));
    }

    #[test]
    fn malformed_references_say_why() {
        for (bad, why) in [
            ("", "empty"),
            ("Acme/App:1", "lowercase"),
            ("app:", "tag"),
            ("app:-x", "tag"),
            ("app@sha256:xyz", "64 hex"),
            ("reg.example:99999/app", "port"),
            ("a b", "whitespace"),
            ("app//x", "component"),
        ] {
            let e = ImageRef::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(e.contains("invalid image reference"), "{e}");
        }
    }

    proptest! {
        #[test]
        fn canonical_forms_round_trip(
            reg in "(registry\\.example|127\\.0\\.0\\.1:5000|docker\\.io)",
            repo in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){1,2}",
            tag in "[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,20}",
        ) {
            let text = format!("{reg}/{repo}:{tag}");
            let r = ImageRef::parse(&text).unwrap();
            prop_assert_eq!(r.to_string(), text.clone());
            prop_assert_eq!(ImageRef::parse(&r.to_string()).unwrap(), r);
        }

        #[test]
        fn garbage_never_panics(s in "\\PC{0,80}") {
            let _ = ImageRef::parse(&s);
        }
    }
}
