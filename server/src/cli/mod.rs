//! The `plugin-host` command line. Parsing lives here; the HTTP client commands in `client`;
//! `main.rs` only wires things up.

mod client;
mod jobs;

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
    /// Manage the durable jobs of a running server.
    Jobs(JobsArgs),
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
        /// Unload everything and exit after printing the report; the exit status is non-zero
        /// when a plugin failed to load or was skipped.
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
    /// Address of the application listener, where plugins serve their HTTP routes,
    /// `ADDR:PORT` (port 0 picks a free port; default: `[app] listen`, else none).
    #[arg(long)]
    pub app_listen: Option<std::net::SocketAddr>,
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
    /// Configuration file to read the address and token from, given before the subcommand
    /// (`plugin-host plugins --config FILE ls`). After it, `--config` is the subcommand's own
    /// (`plugins load PATH --config JSON` is the plugin's config); use `--config-file` there.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Configuration file to read the address and token from, accepted anywhere on the line.
    #[arg(long = "config-file", global = true, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
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
    /// List a plugin's HTTP routes (served on the application listener under
    /// `/plugins/NAME/`): method, path, auth, handler function, summary.
    Routes {
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
        /// Threads of the pool of a concurrent plugin (1 to 64, default 4).
        #[arg(long)]
        threads: Option<usize>,
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
    /// Call one of a plugin's named functions with JSON input (argument, or `-` for stdin;
    /// default `null`, which a function taking `()` or an `Option` accepts).
    Call {
        /// Plugin name.
        name: String,
        /// Function name (see `plugins show NAME` or `inspect FILE`).
        function: String,
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

/// `plugin-host jobs ...`
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Server and output options.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: JobsCommand,
}

/// The job commands.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first: id, plugin, kind, state, attempts, run at, last error.
    Ls {
        /// Only this plugin's jobs.
        #[arg(long)]
        plugin: Option<String>,
        /// Only jobs of this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only jobs in this state (available, scheduled, retryable, running, completed,
        /// discarded, cancelled).
        #[arg(long)]
        state: Option<String>,
        /// Only jobs with an id below this one (the next page).
        #[arg(long)]
        before: Option<i64>,
        /// At most this many jobs (1 to 1000, default 100).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Show one job and its attempts (the execution log).
    Show {
        /// Job id.
        id: i64,
    },
    /// Make a discarded or completed job wait again, with fresh attempts.
    Retry {
        /// Job id.
        id: i64,
    },
    /// Cancel a waiting job.
    Cancel {
        /// Job id.
        id: i64,
    },
    /// Enqueue a job of a plugin's kind with JSON input (argument, or `-` for stdin; default
    /// `null`).
    Enqueue {
        /// Plugin name.
        plugin: String,
        /// Job kind (see `plugins show NAME`).
        kind: String,
        /// JSON input.
        input: Option<String>,
        /// Not before this time, RFC 3339 (`2026-12-01T10:00:00Z`).
        #[arg(long)]
        run_at: Option<String>,
        /// Not enqueued while a waiting job of the kind has this key.
        #[arg(long)]
        dedupe_key: Option<String>,
        /// Priority, smaller first (default: the kind's).
        #[arg(long, allow_negative_numbers = true)]
        priority: Option<i16>,
    },
    /// Enqueue a schedule's job now, outside its timetable.
    Run {
        /// Plugin name.
        plugin: String,
        /// Schedule name.
        schedule: String,
    },
    /// Pause a job kind: none of its jobs starts until it is resumed.
    Pause {
        /// Plugin name.
        plugin: String,
        /// Job kind.
        kind: String,
    },
    /// Resume a paused job kind.
    Resume {
        /// Plugin name.
        plugin: String,
        /// Job kind.
        kind: String,
    },
    /// List the paused job kinds.
    Paused,
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::{CommandFactory as _, Parser as _};

    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn jobs_enqueue_takes_its_options() {
        let cli = Cli::try_parse_from([
            "plugin-host",
            "jobs",
            "enqueue",
            "mailer",
            "send",
            r#"{"to":"a"}"#,
            "--run-at",
            "2026-12-01T10:00:00Z",
            "--dedupe-key",
            "k",
            "--priority",
            "-3",
        ])
        .unwrap();
        let Command::Jobs(args) = cli.command else {
            panic!("not jobs")
        };
        let JobsCommand::Enqueue {
            plugin,
            input,
            run_at,
            priority,
            ..
        } = args.command
        else {
            panic!("not enqueue")
        };
        assert_eq!(plugin, "mailer");
        assert_eq!(input.as_deref(), Some(r#"{"to":"a"}"#));
        assert_eq!(run_at.as_deref(), Some("2026-12-01T10:00:00Z"));
        assert_eq!(priority, Some(-3));
    }

    #[test]
    fn plugin_config_and_config_file_do_not_clash() {
        let cli = Cli::try_parse_from([
            "plugin-host",
            "plugins",
            "--config",
            "host.toml",
            "load",
            "/p/lib.so",
            "--config",
            r#"{"x":1}"#,
            "--config-file",
            "other.toml",
        ])
        .unwrap();
        let Command::Plugins(args) = cli.command else {
            panic!("not plugins")
        };
        assert_eq!(args.client.config.as_deref(), Some(Path::new("host.toml")));
        assert_eq!(
            args.client.config_file.as_deref(),
            Some(Path::new("other.toml"))
        );
        let PluginsCommand::Load { config, .. } = args.command else {
            panic!("not load")
        };
        assert_eq!(config.as_deref(), Some(r#"{"x":1}"#));
    }
}
