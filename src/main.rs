//! The `sluice` binary: parses arguments, loads configuration, wires the pieces.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use sluice::cli::{
    Cli, ClientArgs, Command, ConfigCommand, LogFormatArg, MigrateArgs, client_token, run_client,
};
use sluice::config::{self, LogFormat, Settings};
use sluice::startup::{self, Application};
use sluice::telemetry;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. Most messages already end with their cause's
/// text, which is then not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn load_settings(cli: &Cli) -> anyhow::Result<Settings> {
    let mut settings = config::load(cli.config.as_deref(), std::env::vars())?;
    if let Some(f) = cli.log_format {
        settings.log.format = match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
    Ok(settings)
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    if let Command::Openapi = cli.command {
        let doc = serde_json::to_string_pretty(&sluice::api::openapi::document())
            .context("rendering the OpenAPI document")?;
        println!("{doc}");
        return Ok(());
    }
    if let Command::SnapshotHelper(cmd) = &cli.command {
        let report = sluice::cli::snapshot_helper::run(cmd).context("snapshot helper")?;
        println!("{report}");
        return Ok(());
    }
    let settings = load_settings(&cli)?;
    if cli.command.is_client() {
        return client_main(cli, &settings);
    }
    if let Command::Config(ConfigCommand::Check) = cli.command {
        let shown =
            toml::to_string_pretty(&settings).context("rendering the effective configuration")?;
        println!("# configuration is valid; effective settings (secrets redacted):\n{shown}");
        return Ok(());
    }
    telemetry::init(&settings.log, std::io::stderr).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run => run(settings).await,
            Command::Agent => agent(settings).await,
            Command::Migrate(MigrateArgs { to: Some(target) }) => {
                let migrated = sluice::migrate::to_postgres(&settings, target.expose()).await?;
                print!("{migrated}");
                Ok(())
            }
            Command::Migrate(MigrateArgs { to: None }) => {
                let store = startup::open_store(&settings).await?;
                let applied = store.applied_migrations().await?;
                println!(
                    "database {} is at migration {:?}",
                    sluice::store::redact_url(&settings.database_url()),
                    applied.last()
                );
                store.close().await;
                Ok(())
            }
            _ => Ok(()),
        }
    })
}

/// Client commands: one call to the daemon's API; any error is a non-zero exit.
fn client_main(cli: Cli, settings: &Settings) -> anyhow::Result<()> {
    let server = cli.server.clone().unwrap_or_else(|| {
        let mut addr = settings.api.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    });
    let token = client_token(
        settings,
        std::env::var("SLUICE_TOKEN").ok(),
        &server,
        cli.server.is_some(),
    )?;
    let args = ClientArgs {
        server,
        token,
        json: cli.json,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(run_client(cli.command, args))?;
    Ok(())
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    // The handlers go in before anything is built or logged: a signal that arrives once
    // the API has announced its address must stop the daemon cleanly, not kill it.
    let signals = Signals::install().context("installing the SIGTERM and SIGINT handlers")?;
    let app = Application::build(settings).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(signals.cancel_on_first(shutdown.clone()));
    app.run_until_stopped(shutdown).await?;
    Ok(())
}

/// `sluice agent`: proves which host it is (one line and exit 2 when it cannot), then
/// runs that host's loops until SIGTERM or SIGINT.
async fn agent(mut settings: Settings) -> anyhow::Result<()> {
    let signals = Signals::install().context("installing the SIGTERM and SIGINT handlers")?;
    // A restarted agent on the same machine is the same agent: no pid in its name.
    if settings.leader.instance.is_empty() {
        settings.leader.instance = format!("{}@{}", settings.agent.host, machine_name());
    }
    let instance = settings.leader.instance.clone();
    let agent_settings = settings.agent.clone();
    let app = Application::build(settings).await?;
    let state = app.state();
    if let Err(e) = sluice::agent::identity::check(
        &state.store,
        &agent_settings,
        &instance,
        state.clock.now(),
        state.api.host_down_after,
    )
    .await
    {
        eprintln!("sluice agent: {e}");
        std::process::exit(2);
    }
    tracing::info!(host = %agent_settings.host, instance, "agent identity confirmed");
    let shutdown = CancellationToken::new();
    tokio::spawn(signals.cancel_on_first(shutdown.clone()));
    app.run_agent_until_stopped(shutdown).await?;
    Ok(())
}

fn machine_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sluice".to_owned())
}

/// The SIGTERM and SIGINT streams, registered with the runtime.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Cancels `token` on the first SIGTERM or SIGINT.
    async fn cancel_on_first(mut self, token: CancellationToken) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
            _ = self.int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
        }
        token.cancel();
    }
}
