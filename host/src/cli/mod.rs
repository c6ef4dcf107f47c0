//! The `plugin-host` command line. Parsing lives here; the HTTP client commands in `client`;
//! `main.rs` only wires things up.

mod client;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use client::{ClientCommand, ClientError, run_client};

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
    /// Run the host with its admin API.
    Serve(ServeArgs),
    /// Configuration tools.
    Config {
        /// What to do with the configuration.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage the plugins of a running server.
    Plugins(PluginsArgs),
    /// Follow the events of a running server.
    Events(EventsArgs),
    /// Print a plugin file's manifest as JSON, without running any of its code.
    Inspect {
        /// The plugin library.
        file: PathBuf,
    },
    /// Load every plugin in a folder (dependency order), print the report, and keep them running
    /// until interrupted. No admin API; see `serve`.
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

/// `plugin-host serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (default: ./plugin-host.toml when present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address of the admin API, `ADDR:PORT` (port 0 picks a free port).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Folder of plugins to load at start.
    #[arg(long)]
    pub plugins_dir: Option<PathBuf>,
    /// Keep watching the plugins folder.
    #[arg(long)]
    pub watch: bool,
    /// Folder for the embedded backends' data and the persisted plugin set.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Log format: pretty or json.
    #[arg(long)]
    pub log_format: Option<String>,
}

/// `plugin-host config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file (and the environment) and print the result.
    Check {
        /// The file (default: ./plugin-host.toml when present).
        file: Option<PathBuf>,
    },
}

/// Where a client command finds the server.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// Server address, `http://HOST:PORT` (default: env PLUGIN_HOST_ADDR, else the config's
    /// `listen`).
    #[arg(long, global = true)]
    pub addr: Option<String>,
    /// Admin token (default: env PLUGIN_HOST_ADMIN_TOKEN, else the config's `admin_token`).
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// Configuration file to read the address and token from.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `plugin-host plugins ...`
#[derive(Debug, Args)]
pub struct PluginsArgs {
    /// Server and output options.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: PluginsCommand,
}

/// The plugin commands.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List plugins in dependency order.
    Ls,
    /// Show one plugin.
    Show {
        /// Plugin name.
        name: String,
    },
    /// Load a plugin file (a path on the server's machine).
    Load {
        /// The library file.
        path: PathBuf,
        /// The plugin's config, as JSON.
        #[arg(long)]
        config: Option<String>,
        /// Resource overrides, as JSON.
        #[arg(long)]
        overrides: Option<String>,
    },
    /// Unload a plugin.
    Unload {
        /// Plugin name.
        name: String,
        /// Unload its dependents first.
        #[arg(long)]
        cascade: bool,
    },
    /// Reload a plugin from its file (atomic; dependents follow).
    Reload {
        /// Plugin name.
        name: String,
    },
    /// Enable a disabled plugin.
    Enable {
        /// Plugin name.
        name: String,
    },
    /// Disable a plugin without unloading it.
    Disable {
        /// Plugin name.
        name: String,
    },
    /// Call a plugin with JSON input (argument, or `-` for stdin; default `null`).
    Exec {
        /// Plugin name.
        name: String,
        /// JSON input.
        input: Option<String>,
    },
}

/// `plugin-host events ...`
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Server and output options.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: EventsCommand,
}

/// The event commands.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print events as they happen.
    Tail {
        /// Only events matching this pattern (`plugin:*`, `user:**`).
        #[arg(long)]
        pattern: Option<String>,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
}
