//! The client commands: talk to a running server over its admin API and print tables (or the
//! server's JSON with `--json`). Exit non-zero with the server's code and message on errors.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};

use serde_json::{Value, json};

use super::{ClientArgs, EventsArgs, EventsCommand, JobsArgs, PluginsArgs, PluginsCommand};
use plugin_host::HostConfig;

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{code}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// Message.
        message: String,
    },
    /// The server could not be reached.
    #[error(
        "cannot reach the plugin-host server at {addr}: {message}\nIs `plugin-host serve` running there? Point the CLI at a server with --addr http://HOST:PORT or the PLUGIN_HOST_ADDR environment variable (default: `listen` of the config file, else 127.0.0.1:8700)"
    )]
    Transport {
        /// The address tried.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// Bad input on the command line.
    #[error("{0}")]
    Usage(String),
}

/// A command to run: either against `plugins` or `events`.
#[derive(Debug)]
pub enum ClientCommand<'a> {
    /// `plugins ...`
    Plugins(&'a PluginsArgs),
    /// `events ...`
    Events(&'a EventsArgs),
    /// `jobs ...`
    Jobs(&'a JobsArgs),
}

pub(super) struct Client {
    base: String,
    /// Where the address came from, for the error when nothing answers there.
    from: &'static str,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    pub(super) fn new(args: &ClientArgs) -> Result<Self, ClientError> {
        let file = args.config_file.as_deref().or(args.config.as_deref());
        let config = HostConfig::load(file).map_err(|e| ClientError::Usage(e.chain()))?;
        let (base, from) = match (&args.addr, std::env::var("PLUGIN_HOST_ADDR")) {
            (Some(addr), _) => (addr.clone(), "--addr"),
            (None, Ok(addr)) => (addr, "PLUGIN_HOST_ADDR"),
            (None, Err(_)) => (format!("http://{}", config.listen), "the config's listen"),
        };
        let base = if base.contains("://") {
            base
        } else {
            format!("http://{base}")
        };
        let token = args
            .token
            .clone()
            .or_else(|| std::env::var("PLUGIN_HOST_ADMIN_TOKEN").ok())
            .or(config.admin_token);
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(std::time::Duration::from_secs(5))
            .build();
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            from,
            token,
            agent,
        })
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let req = self.agent.request(method, &format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.set("Authorization", &format!("Bearer {t}")),
            None => req,
        }
    }

    pub(super) fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let req = self.request(method, path);
        let result = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match result {
            Ok(resp) => {
                let mut text = String::new();
                resp.into_reader()
                    .read_to_string(&mut text)
                    .map_err(|e| self.transport(e.to_string()))?;
                Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
            }
            Err(ureq::Error::Status(status, resp)) => Err(server_error(status, resp)),
            Err(e) => Err(self.transport(e.to_string())),
        }
    }

    /// `POST /api/v1/plugins/NAME/VERB`; returns the plugin object and a one-line summary.
    fn action(&self, name: &str, verb: &str, done: &str) -> Result<(Value, String), ClientError> {
        let v = self.send(
            "POST",
            &format!("/api/v1/plugins/{}/{verb}", enc(name)),
            Some(&json!({})),
        )?;
        let human = format!("{done} {}\n", plugin_summary(&v));
        Ok((v, human))
    }

    fn transport(&self, message: String) -> ClientError {
        ClientError::Transport {
            addr: format!("{} (from {})", self.base, self.from),
            message,
        }
    }
}

/// The server's error body as a [`ClientError`].
fn server_error(status: u16, resp: ureq::Response) -> ClientError {
    let body: Value = resp.into_json().unwrap_or(Value::Null);
    let field = |k: &str| body["error"][k].as_str().unwrap_or("").to_owned();
    ClientError::Server {
        status,
        code: Some(field("code"))
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "unknown".into()),
        message: field("message"),
    }
}

pub(super) fn parse_json(what: &str, text: &str) -> Result<Value, ClientError> {
    serde_json::from_str(text).map_err(|e| ClientError::Usage(format!("{what} is not JSON: {e}")))
}

pub(super) fn enc(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(super) fn table(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn plugin_summary(p: &Value) -> String {
    format!(
        "{} {} ({}, generation {})",
        p["name"].as_str().unwrap_or("?"),
        p["version"].as_str().unwrap_or("?"),
        p["state"].as_str().unwrap_or("?"),
        p["generation"]
    )
}

fn plugin_details(p: &Value) -> String {
    let list = |v: &Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let mut out = String::new();
    for (k, v) in [
        ("name", p["name"].as_str().unwrap_or_default().to_owned()),
        (
            "version",
            p["version"].as_str().unwrap_or_default().to_owned(),
        ),
        ("state", p["state"].as_str().unwrap_or_default().to_owned()),
        ("generation", p["generation"].to_string()),
        ("path", p["path"].as_str().unwrap_or_default().to_owned()),
        (
            "loaded at",
            p["loaded_at"].as_str().unwrap_or_default().to_owned(),
        ),
        ("dependencies", list(&p["dependencies"])),
        ("dependents", list(&p["dependents"])),
        ("tables", list(&p["resources"]["tables"])),
        ("topics", list(&p["resources"]["topics"])),
        ("buckets", list(&p["resources"]["buckets"])),
        ("executes", p["stats"]["executes"].to_string()),
        ("errors", p["stats"]["execute_errors"].to_string()),
    ] {
        let _ = writeln!(out, "{k:<13} {v}");
    }
    if let Some(e) = p["error"].as_str() {
        let _ = writeln!(out, "{:<13} {e}", "error");
    }
    out
}

/// Runs a client command; returns what to print on stdout.
///
/// # Errors
/// [`ClientError`] with the server's code and message, a transport error, or a usage error.
pub fn run_client(command: ClientCommand<'_>) -> Result<String, ClientError> {
    match command {
        ClientCommand::Plugins(args) => plugins(args),
        ClientCommand::Events(args) => events(args),
        ClientCommand::Jobs(args) => super::jobs::run(args),
    }
}

fn plugins(args: &PluginsArgs) -> Result<String, ClientError> {
    let c = Client::new(&args.client)?;
    let json_out = args.client.json;
    let (value, human) = match &args.command {
        PluginsCommand::Ls => list(&c)?,
        PluginsCommand::Show { name } => {
            let v = c.send("GET", &format!("/api/v1/plugins/{}", enc(name)), None)?;
            let human = plugin_details(&v);
            (v, human)
        }
        PluginsCommand::Routes { name } => routes(&c, name)?,
        PluginsCommand::Load {
            path,
            config,
            overrides,
            threads,
        } => load(&c, path, config.as_deref(), overrides.as_deref(), *threads)?,
        PluginsCommand::Unload { name, cascade } => unload(&c, name, *cascade)?,
        PluginsCommand::Reload { name } => c.action(name, "reload", "reloaded")?,
        PluginsCommand::Enable { name } => c.action(name, "enable", "enabled")?,
        PluginsCommand::Disable { name } => c.action(name, "disable", "disabled")?,
        PluginsCommand::Exec { name, input } => {
            let path = format!("/api/v1/plugins/{}/execute", enc(name));
            call_with(&c, &path, input.as_deref())?
        }
        PluginsCommand::Call {
            name,
            function,
            input,
        } => {
            let path = format!("/api/v1/plugins/{}/call/{}", enc(name), enc(function));
            call_with(&c, &path, input.as_deref())?
        }
    };
    Ok(output(json_out, &value, human))
}

/// What a command prints: the server's JSON with `--json`, else the human text.
pub(super) fn output(json: bool, value: &Value, human: String) -> String {
    if json {
        format!(
            "{}\n",
            serde_json::to_string_pretty(value).unwrap_or_default()
        )
    } else {
        human
    }
}

/// `plugins ls`: every plugin, in dependency order.
fn list(c: &Client) -> Result<(Value, String), ClientError> {
    let v = c.send("GET", "/api/v1/plugins", None)?;
    let mut rows = vec![vec![
        "NAME".into(),
        "VERSION".into(),
        "STATE".into(),
        "GEN".into(),
        "DEPENDS ON".into(),
    ]];
    for p in v.as_array().into_iter().flatten() {
        rows.push(vec![
            p["name"].as_str().unwrap_or_default().to_owned(),
            p["version"].as_str().unwrap_or_default().to_owned(),
            p["state"].as_str().unwrap_or_default().to_owned(),
            p["generation"].to_string(),
            p["dependencies"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default(),
        ]);
    }
    let human = table(&rows);
    Ok((v, human))
}

/// `plugins routes NAME`: the plugin's routes (`--json`: the route objects).
fn routes(c: &Client, name: &str) -> Result<(Value, String), ClientError> {
    let v = c.send("GET", &format!("/api/v1/plugins/{}", enc(name)), None)?;
    let routes = v["routes"].clone();
    let mut rows = vec![vec![
        "METHOD".into(),
        "PATH".into(),
        "AUTH".into(),
        "FUNCTION".into(),
        "SUMMARY".into(),
    ]];
    let text = |r: &Value, k: &str| r[k].as_str().unwrap_or_default().to_owned();
    for r in routes.as_array().into_iter().flatten() {
        rows.push(vec![
            text(r, "method"),
            format!("/plugins/{name}{}", text(r, "path")),
            text(r, "auth"),
            text(r, "function"),
            text(r, "summary"),
        ]);
    }
    Ok((routes, table(&rows)))
}

/// `plugins load PATH`: the path made absolute (the server's working directory means nothing
/// to a client), with the settings given.
fn load(
    c: &Client,
    path: &std::path::Path,
    config: Option<&str>,
    overrides: Option<&str>,
    threads: Option<usize>,
) -> Result<(Value, String), ClientError> {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut body = json!({ "path": abs });
    if let Some(cfg) = config {
        body["config"] = parse_json("--config", cfg)?;
    }
    if let Some(o) = overrides {
        body["overrides"] = parse_json("--overrides", o)?;
    }
    if let Some(t) = threads {
        body["threads"] = json!(t);
    }
    let v = c.send("POST", "/api/v1/plugins", Some(&body))?;
    let human = format!("loaded {}\n", plugin_summary(&v));
    Ok((v, human))
}

/// `plugins unload NAME`: what was unloaded, each with its outcome.
fn unload(c: &Client, name: &str, cascade: bool) -> Result<(Value, String), ClientError> {
    let v = c.send(
        "DELETE",
        &format!("/api/v1/plugins/{}?cascade={cascade}", enc(name)),
        None,
    )?;
    let mut human = String::new();
    for n in v["unloaded"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let _ = writeln!(
            human,
            "unloaded {n} ({})",
            v["outcome"][n].as_str().unwrap_or("?")
        );
    }
    Ok((v, human))
}

/// A JSON input of the command line: `None` is `null`, `-` is read from stdin.
pub(super) fn read_input(input: Option<&str>) -> Result<Value, ClientError> {
    match input {
        None => Ok(Value::Null),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| ClientError::Usage(format!("cannot read stdin: {e}")))?;
            parse_json("stdin", &text)
        }
        Some(text) => parse_json("input", text),
    }
}

/// Posts a JSON input (`None`: `null`; `-`: read from stdin) to an execute or call route and
/// returns the server's answer with its output, pretty-printed.
fn call_with(c: &Client, path: &str, input: Option<&str>) -> Result<(Value, String), ClientError> {
    let input = read_input(input)?;
    let v = c.send("POST", path, Some(&input))?;
    let human = format!(
        "{}\n",
        serde_json::to_string_pretty(&v["output"]).unwrap_or_default()
    );
    Ok((v, human))
}

#[allow(clippy::print_stdout, reason = "events are printed as they arrive")]
fn events(args: &EventsArgs) -> Result<String, ClientError> {
    let c = Client::new(&args.client)?;
    let EventsCommand::Tail { pattern, count } = &args.command;
    let path = match pattern {
        Some(p) => format!("/api/v1/events/stream?pattern={}", enc(p)),
        None => "/api/v1/events/stream".to_owned(),
    };
    let resp = match c.request("GET", &path).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(status, resp)) => return Err(server_error(status, resp)),
        Err(e) => return Err(c.transport(e.to_string())),
    };
    let reader = BufReader::new(resp.into_reader());
    let mut seen = 0u64;
    let mut name = String::new();
    for line in reader.lines() {
        let line = line.map_err(|e| c.transport(e.to_string()))?;
        if let Some(n) = line.strip_prefix("event:") {
            name = n.trim().to_owned();
        } else if let Some(data) = line.strip_prefix("data:") {
            let data = data.trim();
            if args.client.json {
                println!("{data}");
            } else {
                let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                println!("{name}  {}", v["payload"]);
            }
            seen += 1;
            if count.is_some_and(|n| seen >= n) {
                break;
            }
        }
    }
    Ok(String::new())
}
