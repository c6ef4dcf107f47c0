//! `plugin-host serve`: configuration → manager → restore the persisted plugin set → load the
//! plugins folder → watch it (with `plugins.watch`) → admin API, until SIGINT/SIGTERM; then the
//! watcher stops and plugins are unloaded, dependents first. With `[app] listen`, the
//! application listener (plugin routes) is served beside the admin API.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

use crate::{api, app};
use plugin_host::BusEvent;
use plugin_host::HostConfig;
use plugin_host::{DataDirLock, StateStore};
use plugin_host::{Error, Result};
use plugin_host::{FolderWatcher, WatchOptions};
use plugin_host::{PluginManager, PluginSettings};

/// Runs the server until SIGINT or SIGTERM. Prints `listening on http://ADDR` on stdout as its
/// first line (the real port when the config asked for port 0), then, with `[app] listen`,
/// `app listening on http://ADDR`.
///
/// The phases, in order: fix the folders, lock the data folder, bind, build the manager, apply
/// the persisted and configured settings, forward bus events to the event streams, restore the
/// persisted plugin set and load the plugins folder, watch the folder, serve the admin API;
/// then stop the watcher and unload the plugins, dependents first.
///
/// # Errors
/// `invalid_config` (including a non-loopback address without a token), `data_dir_in_use`
/// when another process serves from the same data folder, `backend_unavailable` when a
/// configured backend does not answer, or an I/O error binding the address.
pub async fn serve(mut config: HostConfig) -> Result<()> {
    config.check_listen()?;
    resolve_folders(&mut config)?;
    // One host per data folder: a second one would overwrite state.json and share the
    // embedded backends' files. Held until this function returns.
    let _data_lock = DataDirLock::acquire(&config.data_dir)?;
    // Bind first: with port 0 the real address is known only now, and presigned links must
    // carry it.
    let (listener, addr) = bind(config.listen, "listen").await?;
    let app_listener = match config.app.listen {
        Some(app_addr) => Some(bind(app_addr, "app.listen").await?),
        None => None,
    };
    let mut bound = config.clone();
    bound.listen = addr;
    // Backends may run their own runtime (PostgreSQL) and block while connecting: build the
    // manager off the async threads.
    let manager = Arc::new(blocking(move || PluginManager::new(bound.manager_config())).await??);
    let store = Arc::new(StateStore::open(&config.data_dir)?);
    let persisted = store.read()?;
    let restored_settings = persisted.as_ref().map(|set| set.settings.clone());
    let (mgr, file) = (Arc::clone(&manager), config.plugin.clone());
    blocking(move || apply_settings(&mgr, restored_settings, file)).await??;
    let events = forward_events(&manager)?;
    let (mgr, st) = (Arc::clone(&manager), StateStore::open(&config.data_dir)?);
    let plugins_dir = config.plugins.dir.clone();
    blocking(move || restore_and_load(&mgr, &st, persisted.is_some(), plugins_dir)).await?;

    // The watched folder, once its initial load is done; kept until shutdown.
    let watcher = start_watcher(&config, &manager, &store).await;
    let app_metrics = app_listener
        .as_ref()
        .map(|_| Arc::new(app::AppMetrics::default()));
    let shared = Arc::new(api::Shared {
        manager: Arc::clone(&manager),
        store: Some(store),
        watch: watcher.as_ref().map(FolderWatcher::board),
        token: config.admin_token.clone(),
        events,
        request_timeout: std::time::Duration::from_millis(config.timeouts.request_ms),
        body_limit: config.limits.body_bytes,
        started: Instant::now(),
        app_metrics: app_metrics.clone(),
    });
    announce("", "admin API", addr);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let app_task = match app_listener {
        Some((app_listener, app_addr)) => {
            announce("app ", "application listener", app_addr);
            let streams = app::Streams::new(
                Arc::clone(manager.bus()),
                config.app.max_streams,
                std::time::Duration::from_millis(config.app.keep_alive_ms),
            )?;
            // Open streams end when the server stops, so the graceful stop does not wait on them.
            let mut stopping = stopped.clone();
            let ending = Arc::clone(&streams);
            tokio::spawn(async move {
                let _ = stopping.wait_for(|s| *s).await;
                ending.shut_down();
            });
            let app = Arc::new(app::App {
                manager: Arc::clone(&manager),
                token: config.app.token.clone(),
                body_limit: config.limits.body_bytes as u64,
                body_timeout: std::time::Duration::from_millis(config.app.body_timeout_ms),
                validators: std::sync::Mutex::default(),
                metrics: app_metrics.unwrap_or_default(),
                streams,
            });
            let limits = app::Limits {
                header_timeout: std::time::Duration::from_millis(config.app.header_timeout_ms),
                write_timeout: std::time::Duration::from_millis(config.app.write_timeout_ms),
                max_connections: config.app.max_connections,
            };
            Some(tokio::spawn(app::serve(
                app_listener,
                app::router(app),
                limits,
                stopped.clone(),
            )))
        }
        None => None,
    };
    axum::serve(listener, api::router(shared))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        })
        .await
        .map_err(|e| Error::Internal {
            message: e.to_string(),
        })?;
    if let Some(task) = app_task {
        let _ = task.await;
    }
    shut_down(watcher, manager).await;
    Ok(())
}

/// Fixes folders given relative against the working directory at start, once.
fn resolve_folders(config: &mut HostConfig) -> Result<()> {
    for dir in [Some(&mut config.data_dir), config.plugins.dir.as_mut()]
        .into_iter()
        .flatten()
    {
        *dir = std::path::absolute(&*dir).map_err(|e| Error::InvalidConfig {
            key: "data_dir / plugins.dir".into(),
            message: format!("cannot resolve `{}`: {e}", dir.display()),
        })?;
    }
    Ok(())
}

/// Binds `addr` (the setting `key`); answers the listener and the address it really got.
async fn bind(
    addr: std::net::SocketAddr,
    key: &str,
) -> Result<(tokio::net::TcpListener, std::net::SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::InvalidConfig {
            key: key.into(),
            message: format!("cannot listen on {addr}: {e}"),
        })?;
    let addr = listener.local_addr().map_err(|e| Error::Internal {
        message: e.to_string(),
    })?;
    Ok((listener, addr))
}

/// Runs blocking work (the manager's calls) off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal {
            message: e.to_string(),
        })
}

/// Settings: the persisted ones first, then the config file's, which win.
fn apply_settings(
    manager: &PluginManager,
    persisted: Option<std::collections::BTreeMap<String, PluginSettings>>,
    file: std::collections::BTreeMap<String, plugin_host::PluginSection>,
) -> Result<()> {
    for (name, s) in persisted.into_iter().flatten() {
        let _ = manager.set_settings(&name, Some(s));
    }
    for (name, section) in file {
        manager.set_settings(
            &name,
            Some(
                PluginSettings::new(section.config, section.overrides)
                    .with_threads(section.threads),
            ),
        )?;
    }
    Ok(())
}

/// The event streams' fan-out: every bus event, to every connected client.
fn forward_events(
    manager: &PluginManager,
) -> Result<tokio::sync::broadcast::Sender<Arc<api::StreamItem>>> {
    let (events, _) = tokio::sync::broadcast::channel::<Arc<api::StreamItem>>(4096);
    let tx = events.clone();
    manager.bus().subscribe_host(
        "**",
        false,
        Arc::new(move |e: &BusEvent| {
            let payload: serde_json::Value = if e.raw {
                serde_json::Value::String(String::from_utf8_lossy(&e.payload).into_owned())
            } else {
                serde_json::from_slice(&e.payload).unwrap_or(serde_json::Value::Null)
            };
            let data =
                serde_json::json!({ "name": &*e.name, "source": e.source, "payload": payload });
            let _ = tx.send(Arc::new(api::StreamItem {
                name: e.name.to_string(),
                data: data.to_string(),
            }));
        }),
    )?;
    Ok(events)
}

/// Restores the persisted plugin set, then loads the plugins folder (plugins already restored
/// are reported as loaded) and persists the result. Failures are logged: the server starts
/// with what loaded.
fn restore_and_load(
    manager: &PluginManager,
    store: &StateStore,
    persisted: bool,
    plugins_dir: Option<std::path::PathBuf>,
) {
    if persisted {
        match store.restore(manager) {
            Ok(r) => {
                tracing::info!(target: "server", loaded = ?r.loaded, failed = r.failed.len(), "plugin set restored")
            }
            Err(e) => {
                tracing::error!(target: "server", error = %e.chain(), "cannot restore the plugin set")
            }
        }
    }
    let Some(dir) = plugins_dir else { return };
    match manager.load_dir(&dir) {
        Ok(r) => {
            for f in r
                .failed
                .iter()
                .filter(|f| f.code != plugin_host::ErrorCode::AlreadyLoaded)
            {
                tracing::warn!(target: "server", path = %f.path.display(), code = %f.code, "{}", f.error);
            }
            tracing::info!(target: "server", loaded = ?r.loaded, dir = %dir.display(), "plugins folder loaded");
        }
        Err(e) => {
            tracing::error!(target: "server", error = %e.chain(), "cannot load the plugins folder")
        }
    }
    if let Err(e) = store.save(manager) {
        tracing::error!(target: "server", error = %e.chain(), "cannot persist the plugin set");
    }
}

/// Prints `{prefix}listening on http://ADDR` as a line of stdout (the admin API's is the first
/// line, the application listener's comes next), and logs it as `what`.
fn announce(prefix: &str, what: &str, addr: std::net::SocketAddr) {
    #[allow(
        clippy::print_stdout,
        reason = "the bound address is part of the command's contract"
    )]
    {
        println!("{prefix}listening on http://{addr}");
        let _ = std::io::stdout().flush();
    }
    tracing::info!(target: "server", %addr, "{what} listening");
}

/// Stops applying folder changes, then unloads the plugins (dependents first) and drops the
/// manager, off the async threads: a backend's own runtime must not be dropped inside this one.
async fn shut_down(watcher: Option<FolderWatcher>, manager: Arc<PluginManager>) {
    if let Some(watcher) = watcher {
        let _ = tokio::task::spawn_blocking(move || watcher.stop()).await;
    }
    tracing::info!(target: "server", "shutting down: unloading plugins, dependents first");
    let _ = tokio::task::spawn_blocking(move || {
        manager.shutdown();
        drop(manager);
    })
    .await;
}

/// Starts the folder watcher when `plugins.watch` is on and `plugins.dir` is set. A watcher that
/// cannot start is logged; the server runs without it.
async fn start_watcher(
    config: &HostConfig,
    manager: &Arc<PluginManager>,
    store: &Arc<StateStore>,
) -> Option<FolderWatcher> {
    if !config.plugins.watch {
        return None;
    }
    let Some(dir) = config.plugins.dir.clone() else {
        tracing::warn!(target: "server", "plugins.watch is on but no plugins folder is set (plugins.dir or --plugins-dir): nothing to watch");
        return None;
    };
    let options = WatchOptions::from_config(&config.plugins).with_store(Arc::clone(store));
    let mgr = Arc::clone(manager);
    let started =
        tokio::task::spawn_blocking(move || FolderWatcher::start(mgr, &dir, options)).await;
    match started {
        Ok(Ok(watcher)) => Some(watcher),
        Ok(Err(e)) => {
            tracing::error!(target: "server", error = %e.chain(), "cannot watch the plugins folder");
            None
        }
        Err(e) => {
            tracing::error!(target: "server", error = %e, "cannot watch the plugins folder");
            None
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
