//! The `plugin-host` binary: arguments → configuration → library calls. All logic lives in the
//! library.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use plugin_host::{HostConfig, LogFormat, ManagerConfig, PluginManager};
use plugin_host_server::cli::{Cli, ClientCommand, Command, ConfigCommand, ServeArgs};

/// Logs to stderr. `filter` is `log.level`: a level, then optional `target=level` directives
/// (`info,access=off`); one that does not parse logs at `info`.
fn init_logging(format: LogFormat, filter: &str) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let targets = filter
        .parse::<tracing_subscriber::filter::Targets>()
        .unwrap_or_else(|_| {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing_subscriber::filter::LevelFilter::INFO)
        });
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().finish().with(targets).init(),
        _ => builder.finish().with(targets).init(),
    }
}

fn serve_config(args: &ServeArgs) -> anyhow::Result<HostConfig> {
    let mut config =
        HostConfig::load(args.config.as_deref()).map_err(|e| anyhow::anyhow!(e.chain()))?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(listen) = args.app_listen {
        config.app.listen = Some(listen);
    }
    if let Some(dir) = &args.plugins_dir {
        config.plugins.dir = Some(dir.clone());
    }
    if args.watch {
        config.plugins.watch = true;
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(f) = &args.log_format {
        config.log.format = match f.as_str() {
            "json" => LogFormat::Json,
            "pretty" => LogFormat::Pretty,
            other => {
                anyhow::bail!("invalid configuration `--log-format`: {other:?}: use pretty or json")
            }
        };
    }
    config.validate().map_err(|e| anyhow::anyhow!(e.chain()))?;
    Ok(config)
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => check_config(file.as_deref()),
        Command::Plugins(args) => client(ClientCommand::Plugins(&args)),
        Command::Events(args) => client(ClientCommand::Events(&args)),
        Command::Jobs(args) => client(ClientCommand::Jobs(&args)),
        Command::Inspect { file } => inspect(&file),
        Command::Run {
            plugins_dir,
            once,
            json,
            init_timeout,
        } => run_folder(&plugins_dir, once, json, init_timeout),
    }
}

/// `plugin-host serve`: the server until SIGINT or SIGTERM.
fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let config = serve_config(args)?;
    init_logging(config.log.format, &config.log.level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("plugin-host-api")
        .build()
        .context("starting the async runtime")?;
    runtime
        .block_on(plugin_host_server::serve(config))
        .map_err(|e| anyhow::anyhow!(e.chain()))?;
    Ok(())
}

/// `plugin-host config check`: the effective configuration, secrets masked.
#[allow(clippy::print_stdout, reason = "the command's output goes to stdout")]
fn check_config(file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config = HostConfig::load(file).map_err(|e| anyhow::anyhow!(e.chain()))?;
    config
        .check_listen()
        .map_err(|e| anyhow::anyhow!(e.chain()))?;
    let mut shown = serde_json::to_value(&config)?;
    for secret in [
        "/admin_token",
        "/app/token",
        "/backends/buckets/secret_access_key",
        "/backends/buckets/session_token",
    ] {
        if let Some(v) = shown.pointer_mut(secret)
            && v.is_string()
        {
            *v = serde_json::Value::String("(set)".into());
        }
    }
    println!(
        "configuration is valid\n{}",
        serde_json::to_string_pretty(&shown)?
    );
    Ok(())
}

/// The client commands: talk to a running server and print what it answered.
#[allow(clippy::print_stdout, reason = "the command's output goes to stdout")]
fn client(command: ClientCommand<'_>) -> anyhow::Result<()> {
    let out = plugin_host_server::cli::run_client(command).map_err(|e| anyhow::anyhow!(e))?;
    print!("{out}");
    Ok(())
}

/// `plugin-host inspect FILE`: the declaration read from the file, no code run.
#[allow(clippy::print_stdout, reason = "the command's output goes to stdout")]
fn inspect(file: &std::path::Path) -> anyhow::Result<()> {
    init_logging(LogFormat::Pretty, "warn");
    // The same rules as a load: bounded by the configured limit (config file and
    // PLUGIN_HOST_MAX_PLUGIN_BYTES), refused if not a regular file.
    let limit = HostConfig::load(None)
        .map(|c| c.limits.max_plugin_bytes)
        .unwrap_or(plugin_host::DEFAULT_MAX_PLUGIN_BYTES);
    let inspection =
        plugin_host::inspect_with_limit(file, limit).map_err(|e| anyhow::anyhow!(e.chain()))?;
    println!("{}", serde_json::to_string_pretty(&inspection)?);
    Ok(())
}

/// `plugin-host run DIR`: loads a folder with no server, reports, and keeps running (or, with
/// `--once`, exits: non-zero when anything failed or was skipped).
#[allow(clippy::print_stdout, reason = "the command's output goes to stdout")]
fn run_folder(
    plugins_dir: &std::path::Path,
    once: bool,
    json: bool,
    init_timeout: u64,
) -> anyhow::Result<()> {
    let level = std::env::var("PLUGIN_HOST_LOG").unwrap_or_else(|_| "info".into());
    init_logging(LogFormat::Pretty, &level);
    let config =
        ManagerConfig::default().with_initialize_timeout(Duration::from_secs(init_timeout));
    let manager = PluginManager::new(config).map_err(|e| anyhow::anyhow!(e.chain()))?;
    let report = manager
        .load_dir(plugins_dir)
        .map_err(|e| anyhow::anyhow!(e.chain()))
        .with_context(|| format!("loading {}", plugins_dir.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for name in &report.loaded {
            println!("loaded   {name}");
        }
        for f in &report.failed {
            println!("failed   {} ({}): {}", f.path.display(), f.code, f.error);
        }
        for s in &report.skipped {
            println!("skipped  {} (needs {})", s.name, s.because);
        }
    }
    if !once {
        println!(
            "running {} plugin(s); press Ctrl-C to stop",
            report.loaded.len()
        );
        loop {
            std::thread::park();
        }
    }
    drop(manager);
    if !report.failed.is_empty() || !report.skipped.is_empty() {
        anyhow::bail!(
            "{} plugin(s) failed to load and {} were skipped",
            report.failed.len(),
            report.skipped.len()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
