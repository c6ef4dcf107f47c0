//! The `plugin-host` command line: `inspect` a plugin file without running it, `run` a folder
//! of plugins. Parsing lives here; `main.rs` only wires it up.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// plugin-host: load, unload and reload native plugins at runtime.
#[derive(Debug, Parser)]
#[command(name = "plugin-host", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a plugin file's manifest as JSON, without running any of its code.
    Inspect {
        /// The plugin library.
        file: PathBuf,
    },
    /// Load every plugin in a folder (dependency order), print the report, and keep them running
    /// until interrupted.
    Run {
        /// Folder of plugin libraries.
        #[arg(long)]
        plugins_dir: PathBuf,
        /// Unload everything and exit after printing the report.
        #[arg(long)]
        once: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Seconds a plugin's initialize may take.
        #[arg(long, default_value_t = 10)]
        init_timeout: u64,
    },
}
