//! The mail delivery task: takes the tail's jobs in order, reads what each mail needs
//! (the workspace, the release and its changelog), renders and sends it, retrying a
//! failed read or send with backoff (`[notifications] retries`, `backoff`) before giving
//! up on it (counted as `failed`). A stop abandons the job between attempts; it is sent
//! again after the restart (the cursor never passed it).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, AsyncTransport, Message};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::compose::{self, Mail};
use super::templates::Templates;
use super::{Counters, Smtp};
use crate::domain::{EmailAddress, WorkspaceName};
use crate::notify::deliver::Job;
use crate::notify::feed::Progress;
use crate::store::{Store, StoreError};
use crate::task::{Action, Pass, Task};

/// An address as lettre takes it (every `EmailAddress` is a plain `local@domain`, which
/// it accepts).
pub(super) fn address(a: &EmailAddress) -> Result<Address, String> {
    a.as_str().parse().map_err(|e| format!("address {a}: {e}"))
}

pub(super) struct EmailDelivery {
    pub(super) rx: mpsc::Receiver<Job>,
    pub(super) store: Store,
    pub(super) smtp: Smtp,
    pub(super) templates: Templates,
    /// `[email] admins`.
    pub(super) admins: Vec<EmailAddress>,
    /// `email:host:port`, for metrics and logs.
    pub(super) label: String,
    pub(super) retries: u32,
    pub(super) backoff: Duration,
    pub(super) counters: Counters,
    pub(super) progress: Arc<Progress>,
}

impl Task for EmailDelivery {
    const NAME: &'static str = "notifier_email";
    type Error = std::convert::Infallible;

    async fn pass(&mut self, cx: &mut Pass) -> Result<Action, Self::Error> {
        let job = tokio::select! {
            () = cx.stop().cancelled() => return Ok(Action::await_change()),
            j = self.rx.recv() => match j {
                Some(j) => j,
                None => return Ok(Action::await_change()),
            },
        };
        cx.worked_on(format_args!("event:{}", job.event_id));
        if self.deliver(&job, cx.stop()).await.is_none() {
            return Ok(Action::await_change());
        }
        self.progress
            .done_through
            .store(job.event_id, Ordering::Release);
        self.progress.open.fetch_sub(1, Ordering::AcqRel);
        Ok(Action::requeue(Duration::ZERO))
    }
}

impl EmailDelivery {
    /// Every mail of `job`, each sent or given up (`Some`); `None` when `stop` came
    /// during a wait.
    async fn deliver(&self, job: &Job, stop: &CancellationToken) -> Option<()> {
        let mut delay = self.backoff;
        let mut attempt = 0;
        let mails = loop {
            attempt += 1;
            match self.mails(job).await {
                Ok(m) => break m,
                Err(e) if attempt <= self.retries => {
                    tracing::warn!(sink = %self.label, event_id = job.event_id, attempt, error = %e, "mail: cannot read what the mail needs; retrying");
                    wait(stop, &mut delay).await?;
                }
                Err(e) => {
                    self.counters.inc(&self.label, "failed");
                    tracing::error!(sink = %self.label, event_id = job.event_id, attempts = attempt, error = %e, "mail given up");
                    return Some(());
                }
            }
        };
        for (i, mail) in mails.iter().enumerate() {
            self.send(job, i, mail, stop).await?;
        }
        Some(())
    }

    /// The mails an event asks for, from the rows it names.
    async fn mails(&self, job: &Job) -> Result<Vec<Mail>, StoreError> {
        let ev = &job.event;
        match job.kind {
            "release.detected" => {
                let Some(id) = compose::release_id(ev) else {
                    return Ok(Vec::new());
                };
                let release = self.store.release(id).await?;
                let workspaces = self.store.workspaces().await?;
                Ok(compose::update_available(ev, &release, &workspaces))
            }
            "workspace.updated" if compose::is_update(ev) => {
                let Some(name) = ev
                    .workspace
                    .as_deref()
                    .and_then(|n| WorkspaceName::parse(n).ok())
                else {
                    return Ok(Vec::new());
                };
                let w = match self.store.workspace(&name).await {
                    Ok(w) => w,
                    // Deleted since: nobody left to tell.
                    Err(StoreError::NotFound { .. }) => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                };
                let to = ev.detail.get("to").and_then(serde_json::Value::as_str);
                let releases = self.store.releases_of_image(&w.image.to_string()).await?;
                let release = releases
                    .iter()
                    .rev()
                    .find(|r| Some(r.digest.as_str()) == to);
                Ok(compose::updated(ev, &w, release).into_iter().collect())
            }
            kind => Ok(compose::for_admins(kind, ev, &self.admins)
                .into_iter()
                .collect()),
        }
    }

    /// Sends one mail until it is delivered or given up (`Some`); `None` on `stop`.
    async fn send(
        &self,
        job: &Job,
        index: usize,
        mail: &Mail,
        stop: &CancellationToken,
    ) -> Option<()> {
        let label = &self.label;
        let workspace = mail.workspace.as_deref().unwrap_or_default();
        let rollout = job.event.rollout_id;
        let template = mail.template.name();
        let message = match self.message(job, index, mail) {
            Ok(m) => m,
            Err(e) => {
                self.counters.inc(label, "failed");
                tracing::error!(sink = %label, event_id = job.event_id, workspace, rollout, template, error = %e, "mail cannot be built; given up");
                return Some(());
            }
        };
        let mut delay = self.backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.smtp.transport.send(message.clone()).await {
                Ok(_) => {
                    self.counters.inc(label, "delivered");
                    tracing::info!(sink = %label, event_id = job.event_id, workspace, rollout, template, recipients = mail.to.len(), attempt, "mail sent");
                    return Some(());
                }
                Err(e) if attempt <= self.retries => {
                    tracing::warn!(sink = %label, event_id = job.event_id, workspace, rollout, template, attempt, error = %e, "mail failed; retrying");
                    wait(stop, &mut delay).await?;
                }
                Err(e) => {
                    self.counters.inc(label, "failed");
                    tracing::error!(sink = %label, event_id = job.event_id, workspace, rollout, template, attempts = attempt, error = %e, "mail given up");
                    return Some(());
                }
            }
        }
    }

    fn message(&self, job: &Job, index: usize, mail: &Mail) -> Result<Message, String> {
        let r = self.templates.render(mail.template, &mail.vars);
        let domain = self.smtp.from.email.domain().to_owned();
        let mut b = Message::builder()
            .from(self.smtp.from.clone())
            .subject(r.subject)
            // Stable across a resend: receivers can recognise a mail sent twice.
            .message_id(Some(format!(
                "<sluice.{}.{}.{index}@{domain}>",
                job.event_id,
                mail.template.name()
            )));
        for to in &mail.to {
            b = b.to(Mailbox::new(None, address(to)?));
        }
        b.multipart(MultiPart::alternative_plain_html(r.text, r.html))
            .map_err(|e| e.to_string())
    }
}

/// Waits `delay` (then doubles it); `None` when `stop` came first.
async fn wait(stop: &CancellationToken, delay: &mut Duration) -> Option<()> {
    tokio::select! {
        () = stop.cancelled() => return None,
        () = tokio::time::sleep(*delay) => {}
    }
    *delay = delay.saturating_mul(2);
    Some(())
}
