//! The `plugin-host` binary: arguments → manager → report. All logic lives in the library.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use plugin_host::cli::{Cli, Command};
use plugin_host::{ManagerConfig, PluginManager};

fn init_logging() {
    let level = std::env::var("PLUGIN_HOST_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
}

#[allow(clippy::print_stdout, reason = "the command's output goes to stdout")]
fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Inspect { file } => {
            let inspection = plugin_host::inspect(&file).map_err(|e| anyhow::anyhow!(e.chain()))?;
            println!("{}", serde_json::to_string_pretty(&inspection)?);
        }
        Command::Run {
            plugins_dir,
            once,
            json,
            init_timeout,
        } => {
            let config =
                ManagerConfig::default().with_initialize_timeout(Duration::from_secs(init_timeout));
            let manager = PluginManager::new(config).map_err(|e| anyhow::anyhow!(e.chain()))?;
            let report = manager
                .load_dir(&plugins_dir)
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
        }
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
