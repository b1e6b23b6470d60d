//! `[email]`: the SMTP sink that mails tenants (a workspace's `contacts`) and admins.
//! Off unless `host` is set; delivery shares `[notifications]` retries, backoff, queue
//! and poll interval with the webhooks.

use std::path::PathBuf;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use super::Secret;
use crate::domain::EmailAddress;

/// How the connection to the SMTP server is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailTls {
    /// Plain connection upgraded with STARTTLS (required, never skipped); port 587.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS); port 465.
    Implicit,
    /// No TLS: only to a loopback host, or with `allow_plain`; port 25.
    None,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailSettings {
    /// The SMTP server; empty: no mail is sent.
    pub host: Option<String>,
    /// Defaults by `tls`: 587 (starttls), 465 (implicit), 25 (none).
    pub port: Option<u16>,
    pub tls: EmailTls,
    /// Allows `tls = "none"` to a host that is not loopback (credentials and mail then
    /// cross the network in clear).
    pub allow_plain: bool,
    /// SMTP AUTH user; with `password`, or neither.
    pub username: Option<String>,
    /// Never printed (`<redacted>` in `config check` and logs).
    pub password: Option<Secret>,
    /// The sender (`From:` and the envelope); required with `host`.
    pub from: Option<EmailAddress>,
    /// Who gets the operator mails: rollback failed (quarantine), rollout aborted.
    pub admins: Vec<EmailAddress>,
    /// A directory whose `<template>.txt` / `<template>.html` files replace the built-in
    /// ones (each file on its own; the others stay built in).
    pub templates: Option<PathBuf>,
    /// Timeout of one SMTP conversation.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// A PEM bundle of CA certificates trusted for the server besides the system's roots
    /// (a private CA); the server's certificate is always verified.
    pub ca_file: Option<PathBuf>,
}

impl Default for EmailSettings {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            tls: EmailTls::Starttls,
            allow_plain: false,
            username: None,
            password: None,
            from: None,
            admins: Vec::new(),
            templates: None,
            timeout: Duration::from_secs(30),
            ca_file: None,
        }
    }
}

impl EmailSettings {
    /// The port to connect to: `port`, else the usual one for `tls`.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            EmailTls::Starttls => 587,
            EmailTls::Implicit => 465,
            EmailTls::None => 25,
        })
    }

    /// Why these settings are refused (the key and the reason), if they are.
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        let host = self.host.as_deref()?;
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Some(("email.host", "must be a host name or address"));
        }
        if self.from.is_none() {
            return Some(("email.from", "is required when email.host is set"));
        }
        if self.username.is_some() != self.password.is_some() {
            return Some((
                "email.password",
                "email.username and email.password go together",
            ));
        }
        if self.tls == EmailTls::None && !self.allow_plain && !is_loopback(host) {
            return Some((
                "email.tls",
                "`none` only to a loopback host, unless email.allow_plain = true",
            ));
        }
        if self.timeout.is_zero() {
            return Some(("email.timeout", "must be longer than 0s"));
        }
        if self.tls == EmailTls::None && self.ca_file.is_some() {
            return Some(("email.ca_file", "only used with tls = starttls or implicit"));
        }
        None
    }

    /// The certificates of `ca_file` (none without it), each a valid trust anchor, or
    /// why the file cannot be used (checked at config load, read again at start).
    pub fn ca_certificates(&self) -> Result<Vec<CertificateDer<'static>>, String> {
        let Some(path) = &self.ca_file else {
            return Ok(Vec::new());
        };
        let shown = path.display();
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{shown}: not a PEM certificate bundle: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{shown}: holds no PEM certificate"));
        }
        let mut roots = rustls::RootCertStore::empty();
        for (i, cert) in certs.iter().enumerate() {
            roots
                .add(cert.clone())
                .map_err(|e| format!("{shown}: certificate {}: {e}", i + 1))?;
        }
        Ok(certs)
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(host: &str) -> EmailSettings {
        EmailSettings {
            host: Some(host.to_owned()),
            from: Some(EmailAddress::parse("sluice@example.com").unwrap()),
            ..EmailSettings::default()
        }
    }

    #[test]
    fn plain_smtp_only_to_loopback_or_when_allowed() {
        assert_eq!(EmailSettings::default().problem(), None, "off by default");
        assert_eq!(on("smtp.example.com").problem(), None);
        assert_eq!(on("smtp.example.com").port(), 587);
        let plain = |host: &str, allow_plain| EmailSettings {
            tls: EmailTls::None,
            allow_plain,
            ..on(host)
        };
        assert_eq!(
            plain("smtp.example.com", false).problem().unwrap().0,
            "email.tls"
        );
        assert_eq!(plain("smtp.example.com", true).problem(), None);
        for lo in ["127.0.0.1", "localhost", "::1", "[::1]"] {
            assert_eq!(plain(lo, false).problem(), None, "{lo}");
        }
        assert_eq!(plain("127.0.0.1", false).port(), 25);
    }

    #[test]
    fn a_sender_and_both_credentials_are_required() {
        let no_from = EmailSettings {
            from: None,
            ..on("smtp.example.com")
        };
        assert_eq!(no_from.problem().unwrap().0, "email.from");
        let half = EmailSettings {
            username: Some("u".into()),
            ..on("smtp.example.com")
        };
        assert_eq!(half.problem().unwrap().0, "email.password");
    }

    #[test]
    fn the_password_never_prints_and_bad_addresses_are_refused() {
        let s: EmailSettings = toml::from_str(
            "host = \"smtp.example.com\"\nfrom = \"s@example.com\"\nusername = \"u\"\npassword = \"pw-s3cr3t\"\nadmins = [\"ops@example.com\"]\n",
        )
        .unwrap();
        assert_eq!(s.problem(), None);
        let shown = format!("{s:?} {}", toml::to_string(&s).unwrap());
        assert!(!shown.contains("pw-s3cr3t"), "{shown}");
        let e = toml::from_str::<EmailSettings>("admins = [\"ops\"]").unwrap_err();
        assert!(e.to_string().contains("invalid email address `ops`"), "{e}");
    }

    #[test]
    fn a_ca_file_must_hold_pem_certificates_and_needs_tls() {
        let dir = tempfile::tempdir().unwrap();
        let with = |name: &str, text: Option<&str>| {
            let path = dir.path().join(name);
            if let Some(t) = text {
                std::fs::write(&path, t).unwrap();
            }
            EmailSettings {
                ca_file: Some(path),
                ..on("smtp.example.com")
            }
        };
        let missing = with("missing.pem", None).ca_certificates().unwrap_err();
        assert!(
            missing.contains("cannot read") && missing.contains("missing.pem"),
            "{missing}"
        );
        let empty = with("empty.pem", Some("not a certificate\n")).ca_certificates();
        assert!(empty.unwrap_err().contains("no PEM certificate"));
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let bad = with("bad.pem", Some(garbage))
            .ca_certificates()
            .unwrap_err();
        assert!(bad.contains("bad.pem: certificate 1"), "{bad}");
        let broken = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(with("broken.pem", Some(broken)).ca_certificates().is_err());
        assert_eq!(on("smtp.example.com").ca_certificates(), Ok(Vec::new()));
        let plain = EmailSettings {
            tls: EmailTls::None,
            allow_plain: true,
            ..with("any.pem", None)
        };
        assert_eq!(plain.problem().unwrap().0, "email.ca_file");
        let toml = format!(
            "[email]\nhost = \"smtp.example.com\"\nfrom = \"s@example.com\"\nca_file = \"{}\"\n",
            dir.path().join("missing.pem").display()
        );
        let e = crate::config::load_from_str(&toml, Vec::new()).unwrap_err();
        assert!(
            e.to_string().contains("key `email.ca_file`: cannot read"),
            "{e}"
        );
    }
}
