//! A webhook URL, which is a secret: Slack-style receivers carry their credential in the
//! path (`https://hooks.example/services/T0/B0/XXXX`), some in the query or userinfo.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use super::secret::REDACTED;

/// An `http` or `https` URL with a host, parsed when the configuration is loaded.
///
/// `Debug`, `Display` and `Serialize` show only `scheme://host[:port]/<redacted>`, so the
/// path, query and credentials cannot leak through a log line, an error, an API answer or
/// `sluice config check`. [`WebhookUrl::expose`] hands out the whole URL where the request
/// is sent.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    url: Url,
    /// `host[:port]`, precomputed: what every printed form shows.
    host: String,
}

/// Why a text is not a usable webhook URL. The text itself is never repeated: it may be
/// the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookUrlError {
    #[error("not a URL ({0})")]
    Syntax(url::ParseError),
    #[error("expected an `http://` or `https://` URL, got scheme `{0}`")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
}

impl WebhookUrl {
    pub fn parse(text: &str) -> Result<Self, WebhookUrlError> {
        let url = Url::parse(text).map_err(WebhookUrlError::Syntax)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WebhookUrlError::Scheme(url.scheme().to_owned()));
        }
        let host = match (url.host_str(), url.port()) {
            (None | Some(""), _) => return Err(WebhookUrlError::NoHost),
            (Some(h), None) => h.to_owned(),
            (Some(h), Some(p)) => format!("{h}:{p}"),
        };
        Ok(Self { url, host })
    }

    /// The whole URL; call only where the request is sent.
    pub fn expose(&self) -> &Url {
        &self.url
    }

    /// `host[:port]`: enough to tell sinks apart in metrics and logs.
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}/{REDACTED}", self.url.scheme(), self.host)
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({self})")
    }
}

impl Serialize for WebhookUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WebhookUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLACK: &str = "https://hooks.example/services/T000/B000/s3cr3t-path?token=q-s3cr3t";

    #[test]
    fn every_printed_form_hides_path_query_and_credentials() {
        let u = WebhookUrl::parse(SLACK).unwrap();
        assert_eq!(u.to_string(), "https://hooks.example/<redacted>");
        assert_eq!(
            format!("{u:?}"),
            "WebhookUrl(https://hooks.example/<redacted>)"
        );
        assert_eq!(
            serde_json::to_string(&u).unwrap(),
            "\"https://hooks.example/<redacted>\""
        );
        let with_user = WebhookUrl::parse("http://us3r:pa55@127.0.0.1:9000/p4th").unwrap();
        for shown in [
            with_user.to_string(),
            format!("{with_user:?}"),
            serde_json::to_string(&with_user).unwrap(),
        ] {
            assert!(shown.contains("http://127.0.0.1:9000/"), "{shown}");
            assert!(
                !shown.contains("pa55") && !shown.contains("us3r"),
                "{shown}"
            );
            assert!(!shown.contains("p4th"), "{shown}");
        }
        assert_eq!(
            u.expose().as_str(),
            SLACK,
            "the request still gets all of it"
        );
    }

    #[test]
    fn only_http_and_https_with_a_host_are_accepted() {
        assert_eq!(
            WebhookUrl::parse("ftp://files.example/s3cr3t").unwrap_err(),
            WebhookUrlError::Scheme("ftp".into())
        );
        assert!(matches!(
            WebhookUrl::parse("hooks.example/s3cr3t"),
            Err(WebhookUrlError::Syntax(_))
        ));
        for bad in ["ftp://files.example/s3cr3t", "hooks.example/s3cr3t"] {
            let e = WebhookUrl::parse(bad).unwrap_err().to_string();
            assert!(
                !e.contains("s3cr3t"),
                "the error repeats no part of it: {e}"
            );
        }
        assert_eq!(
            WebhookUrl::parse("http://[::1]:8080/x").unwrap().host(),
            "[::1]:8080"
        );
    }

    #[test]
    fn the_configuration_file_yields_the_whole_url() {
        #[derive(Deserialize)]
        struct Holder {
            url: WebhookUrl,
        }
        let h: Holder = toml::from_str(&format!("url = \"{SLACK}\"")).unwrap();
        assert_eq!(h.url.expose().as_str(), SLACK);
    }
}
