//! `plugin-host serve`: configuration → manager → restore the persisted plugin set → load the
//! plugins folder → watch it (with `plugins.watch`) → admin API, until SIGINT/SIGTERM; then the
//! watcher stops and plugins are unloaded, dependents first.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

use crate::api;
use plugin_host::BusEvent;
use plugin_host::HostConfig;
use plugin_host::{DataDirLock, StateStore};
use plugin_host::{Error, Result};
use plugin_host::{FolderWatcher, WatchOptions};
use plugin_host::{PluginManager, PluginSettings};

/// Runs the server until SIGINT or SIGTERM. Prints `listening on http://ADDR` on stdout as its
/// first line (the real port when the config asked for port 0).
///
/// # Errors
/// `invalid_config` (including a non-loopback address without a token), `data_dir_in_use`
/// when another process serves from the same data folder, `backend_unavailable` when a
/// configured backend does not answer, or an I/O error binding the address.
pub async fn serve(mut config: HostConfig) -> Result<()> {
    config.check_listen()?;
    // Folders given relative are fixed against the working directory at start, once.
    for dir in [Some(&mut config.data_dir), config.plugins.dir.as_mut()]
        .into_iter()
        .flatten()
    {
        *dir = std::path::absolute(&*dir).map_err(|e| Error::InvalidConfig {
            key: "data_dir / plugins.dir".into(),
            message: format!("cannot resolve `{}`: {e}", dir.display()),
        })?;
    }
    // One host per data folder: a second one would overwrite state.json and share the
    // embedded backends' files. Held until this function returns.
    let _data_lock = DataDirLock::acquire(&config.data_dir)?;
    // Bind first: with port 0 the real address is known only now, and presigned links must
    // carry it.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::InvalidConfig {
            key: "listen".into(),
            message: format!("cannot listen on {}: {e}", config.listen),
        })?;
    let addr = listener.local_addr().map_err(|e| Error::Internal {
        message: e.to_string(),
    })?;
    let mut bound = config.clone();
    bound.listen = addr;
    // Backends may run their own runtime (PostgreSQL) and block while connecting: build the
    // manager off the async threads.
    let manager = Arc::new(
        tokio::task::spawn_blocking(move || PluginManager::new(bound.manager_config()))
            .await
            .map_err(|e| Error::Internal {
                message: e.to_string(),
            })??,
    );
    let store = Arc::new(StateStore::open(&config.data_dir)?);

    // Settings: persisted ones first, then the config file's, which win.
    let persisted = store.read()?;
    let restore_set = persisted.clone();
    let mgr = Arc::clone(&manager);
    let file_settings = config.plugin.clone();
    let plugins_dir = config.plugins.dir.clone();
    let restored = tokio::task::spawn_blocking(move || -> Result<()> {
        if let Some(set) = restore_set {
            for (name, s) in set.settings {
                let _ = mgr.set_settings(&name, Some(s));
            }
        }
        for (name, section) in file_settings {
            mgr.set_settings(
                &name,
                Some(
                    PluginSettings::new(section.config, section.overrides)
                        .with_threads(section.threads),
                ),
            )?;
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::Internal {
        message: e.to_string(),
    })?;
    restored?;

    // SSE fan-out: every bus event, to every connected client.
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

    // Restore, then the plugins folder (plugins already restored are reported as loaded).
    let mgr = Arc::clone(&manager);
    let st = StateStore::open(&config.data_dir)?;
    tokio::task::spawn_blocking(move || {
        if persisted.is_some() {
            match st.restore(&mgr) {
                Ok(r) => tracing::info!(target: "server", loaded = ?r.loaded, failed = r.failed.len(), "plugin set restored"),
                Err(e) => tracing::error!(target: "server", error = %e.chain(), "cannot restore the plugin set"),
            }
        }
        if let Some(dir) = plugins_dir {
            match mgr.load_dir(&dir) {
                Ok(r) => {
                    for f in r.failed.iter().filter(|f| f.code != "already_loaded") {
                        tracing::warn!(target: "server", path = %f.path.display(), code = %f.code, "{}", f.error);
                    }
                    tracing::info!(target: "server", loaded = ?r.loaded, dir = %dir.display(), "plugins folder loaded");
                }
                Err(e) => tracing::error!(target: "server", error = %e.chain(), "cannot load the plugins folder"),
            }
            if let Err(e) = st.save(&mgr) {
                tracing::error!(target: "server", error = %e.chain(), "cannot persist the plugin set");
            }
        }
    })
    .await
    .map_err(|e| Error::Internal { message: e.to_string() })?;

    // The watched folder, once its initial load is done; kept until shutdown.
    let watcher = start_watcher(&config, &manager, &store).await;

    let shared = Arc::new(api::Shared {
        manager: Arc::clone(&manager),
        store: Some(store),
        watch: watcher.as_ref().map(FolderWatcher::board),
        token: config.admin_token.clone(),
        events,
        request_timeout: std::time::Duration::from_millis(config.timeouts.request_ms),
        body_limit: config.limits.body_bytes,
        started: Instant::now(),
    });
    let app = api::router(shared);

    #[allow(
        clippy::print_stdout,
        reason = "the bound address is part of the command's contract"
    )]
    {
        println!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
    }
    tracing::info!(target: "server", %addr, "admin API listening");

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| Error::Internal {
            message: e.to_string(),
        })?;

    // Stop applying folder changes before the plugins go away.
    if let Some(watcher) = watcher {
        let _ = tokio::task::spawn_blocking(move || watcher.stop()).await;
    }
    tracing::info!(target: "server", "shutting down: unloading plugins, dependents first");
    // Unload, then drop the manager off the async threads too: a backend's own runtime must not
    // be dropped inside this one.
    let _ = tokio::task::spawn_blocking(move || {
        manager.shutdown();
        drop(manager);
    })
    .await;
    Ok(())
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
