//! Mail notifications (`[email]`): tenants (a workspace's `contacts`) hear that an update
//! is available (manual mode) and that their workspace was updated, each with the
//! release's changelog; admins (`[email] admins`) hear of quarantines (a failed
//! rollback) and aborted rollouts.
//!
//! The same tail of the audit trail as the webhooks ([`super::feed`]) with a cursor of
//! its own (`settings` row `email_cursor`), so delivery is at least once across restarts
//! and independent of the webhooks. One delivery task reads what a mail needs (the
//! workspace, the release), renders the templates ([`templates`]) and sends over SMTP,
//! retrying with `[notifications] retries` / `backoff`; nothing else waits for it. Each
//! mail carries a `Message-ID` derived from the audit event, so a mail sent again after
//! a restart can be recognised. The SMTP password is a [`crate::config::Secret`] and is
//! handed only to the transport.

mod compose;
mod deliver;
mod templates;

use std::sync::Arc;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use templates::TemplateError;

use super::{Counters, feed};
use crate::clock::Clock;
use crate::config::{EmailSettings, EmailTls, NotificationSettings};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::task::{Backoff, Driver};

/// The `settings` key of the mail tail's cursor.
pub const EMAIL_CURSOR: &str = "email_cursor";

/// The notification kinds mail is about (the rest is never queued for it).
const KINDS: [&str; 4] = [
    "release.detected",
    "workspace.updated",
    "workspace.quarantined",
    "rollout.state_changed",
];

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("email: {0}")]
    Templates(#[from] TemplateError),
    #[error("email: cannot set up the SMTP transport to {host}: {source}")]
    Transport {
        host: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("email: `[email] from` is required")]
    NoSender,
    #[error("email: `[email] from`: {0}")]
    Sender(String),
    #[error("email: `[email] ca_file`: {0}")]
    CaFile(String),
}

/// The SMTP side: the transport and the sender.
pub(super) struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Smtp {
    fn new(s: &EmailSettings, host: &str) -> Result<Self, EmailError> {
        let transport_error = |source| EmailError::Transport {
            host: host.to_owned(),
            source,
        };
        // The server's certificate is always verified: against the system's roots and
        // the certificates of `ca_file`.
        let tls = || -> Result<TlsParameters, EmailError> {
            let mut params = TlsParameters::builder(host.to_owned());
            for der in s.ca_certificates().map_err(EmailError::CaFile)? {
                let cert = Certificate::from_der(der.to_vec()).map_err(transport_error)?;
                params = params.add_root_certificate(cert);
            }
            params.build().map_err(transport_error)
        };
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host);
        let builder = match s.tls {
            // Required: no command after EHLO is sent unless the upgrade succeeded.
            EmailTls::Starttls => builder.tls(Tls::Required(tls()?)),
            EmailTls::Implicit => builder.tls(Tls::Wrapper(tls()?)),
            EmailTls::None => builder,
        };
        let mut builder = builder.port(s.port()).timeout(Some(s.timeout));
        if let (Some(user), Some(password)) = (&s.username, &s.password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        let from = s.from.as_ref().ok_or(EmailError::NoSender)?;
        let from = deliver::address(from).map_err(EmailError::Sender)?;
        Ok(Self {
            transport: builder.build(),
            from: Mailbox::new(Some("sluice".to_owned()), from),
        })
    }
}

/// Starts the mail tail and its delivery task when `[email] host` is set; the handle
/// finishes once both have stopped. Templates that cannot be read, or a transport that
/// cannot be set up, are an error (no mail is sent; the daemon runs on).
pub(super) fn spawn(
    store: Store,
    email: &EmailSettings,
    settings: &NotificationSettings,
    counters: &Counters,
    metrics: &Metrics,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<Option<JoinHandle<()>>, EmailError> {
    let Some(host) = email.host.as_deref() else {
        return Ok(None);
    };
    let templates = templates::Templates::load(email.templates.as_deref())?;
    let smtp = Smtp::new(email, host)?;
    let label = format!("email:{host}:{}", email.port());
    counters.init(&label);
    let (tx, rx) = mpsc::channel(settings.queue_capacity);
    let progress = Arc::new(feed::Progress::default());
    let delivery = deliver::EmailDelivery {
        rx,
        store: store.clone(),
        smtp,
        templates,
        admins: email.admins.clone(),
        label: label.clone(),
        retries: settings.retries,
        backoff: settings.backoff,
        counters: counters.clone(),
        progress: progress.clone(),
    };
    let delivery = Driver::new(delivery, metrics.tasks().clone());
    let delivery = tokio::spawn(delivery.run(shutdown.clone()));
    let interval = settings.poll_interval;
    let tail = feed::Feed {
        store,
        sinks: vec![feed::Sink {
            label,
            events: KINDS.iter().map(|k| (*k).to_owned()).collect(),
            tx,
            format: "email".to_owned(),
            progress,
        }],
        counters: counters.clone(),
        clock,
        interval,
        cursor_key: EMAIL_CURSOR,
        cursor: None,
        stored: 0,
    };
    let tail = Driver::new(tail, metrics.tasks().clone()).backoff(Backoff::new(interval, interval));
    Ok(Some(tokio::spawn(async move {
        tail.run(shutdown).await;
        if let Err(e) = delivery.await {
            tracing::error!(error = %e, "the mail delivery task ended abnormally");
        }
    })))
}
