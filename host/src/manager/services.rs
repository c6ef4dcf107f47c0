//! What a plugin's calls into the host do: logging, dependency handles and calls, the bus, and
//! named host services. Runs on plugin threads; never takes the transition lock, so a plugin
//! calling the host while a transition waits on it cannot deadlock.

use std::sync::Arc;

use super::core::Inner;
use super::types::PluginState;
use super::worker::Invocation;
use crate::bus::Owner;
use crate::error::Error;
use crate::loader::{HostContext, HostServices};

fn to_plugin(e: &Error) -> plugin_api::Error {
    plugin_api::Error::new(e.code().as_str(), e.to_string())
}

fn owner(ctx: &HostContext) -> Owner {
    Owner::Plugin {
        name: ctx.plugin.clone(),
        generation: ctx.generation,
    }
}

impl Inner {
    /// The current instance of a declared dependency of `ctx`'s plugin (its successor, if a
    /// reload is retiring the one found).
    fn declared_dependency(
        &self,
        ctx: &HostContext,
        name: &str,
    ) -> Result<Arc<super::core::Slot>, Error> {
        if !ctx.manifest.depends_on(name) {
            return Err(Error::DependencyNotDeclared {
                plugin: ctx.plugin.clone(),
                dependency: name.to_owned(),
            });
        }
        self.current(name).map_err(|_| Error::DependencyNotFound {
            plugin: ctx.plugin.clone(),
            dependency: name.to_owned(),
        })
    }
}

impl HostServices for Inner {
    fn log(&self, ctx: &HostContext, level: u32, message: &str) {
        let plugin = ctx.plugin.as_str();
        match level {
            1 => tracing::error!(target: "plugin", plugin, "{message}"),
            2 => tracing::warn!(target: "plugin", plugin, "{message}"),
            3 => tracing::info!(target: "plugin", plugin, "{message}"),
            4 => tracing::debug!(target: "plugin", plugin, "{message}"),
            _ => tracing::trace!(target: "plugin", plugin, "{message}"),
        }
    }

    fn dependency(&self, ctx: &HostContext, name: &str) -> Result<u64, plugin_api::Error> {
        let slot = self
            .declared_dependency(ctx, name)
            .map_err(|e| to_plugin(&e))?;
        match slot.state() {
            PluginState::Active | PluginState::Disabled => Ok(slot.generation),
            state => Err(to_plugin(&Error::NotActive {
                name: name.to_owned(),
                state: state.to_string(),
            })),
        }
    }

    fn max_level(&self, _ctx: &HostContext) -> u32 {
        // `enabled!` asks the installed subscriber's filter, including directives for the
        // `plugin` target, which is where `log` above writes.
        if tracing::enabled!(target: "plugin", tracing::Level::TRACE) {
            5
        } else if tracing::enabled!(target: "plugin", tracing::Level::DEBUG) {
            4
        } else if tracing::enabled!(target: "plugin", tracing::Level::INFO) {
            3
        } else if tracing::enabled!(target: "plugin", tracing::Level::WARN) {
            2
        } else if tracing::enabled!(target: "plugin", tracing::Level::ERROR) {
            1
        } else {
            0
        }
    }

    fn call_dependency(
        &self,
        ctx: &HostContext,
        name: &str,
        generation: u64,
        function: Option<&str>,
        input: &[u8],
    ) -> Result<Vec<u8>, plugin_api::Error> {
        let slot = self
            .declared_dependency(ctx, name)
            .map_err(|e| to_plugin(&e))?;
        // The handle follows its dependency through reloads: it reaches the current instance
        // of the lineage it was obtained from. A handle from before the dependency was unloaded
        // (a lineage that ended) is stale.
        if !slot.follows(generation) {
            return Err(to_plugin(&Error::Stale {
                plugin: ctx.plugin.clone(),
                target: name.to_owned(),
                generation,
            }));
        }
        let lineage = slot.lineage;
        let call = Invocation {
            function: function.map(str::to_owned),
            input: input.to_vec(),
        };
        match self.execute_following(slot, call, Some(lineage)) {
            Ok(out) => Ok(out),
            // The dependency's own error code goes through unchanged; the caller can tell it
            // from host errors by the message prefix naming the dependency.
            Err(Error::PluginFailed {
                plugin_code,
                message,
                panicked,
                ..
            }) => Err(plugin_api::Error::new(
                if panicked {
                    "plugin_failed".to_owned()
                } else {
                    plugin_code
                },
                format!("dependency `{name}`: {message}"),
            )),
            Err(e) => Err(to_plugin(&e)),
        }
    }

    fn emit(
        &self,
        ctx: &HostContext,
        name: &str,
        payload: &[u8],
        raw: bool,
    ) -> Result<(), plugin_api::Error> {
        self.bus
            .emit(Some(&owner(ctx)), name, payload, raw)
            .map(drop)
            .map_err(|e| to_plugin(&e))
    }

    fn subscribe(
        &self,
        ctx: &HostContext,
        pattern: &str,
        once: bool,
    ) -> Result<u64, plugin_api::Error> {
        let slot = self.instance(ctx.generation).ok_or_else(|| {
            plugin_api::Error::new(
                "stale_context",
                format!("`{}` has no live instance", ctx.plugin),
            )
        })?;
        let mailbox = Arc::new(slot.mailbox.clone());
        self.bus
            .subscribe_plugin(&ctx.plugin, ctx.generation, pattern, once, mailbox)
            .map_err(|e| to_plugin(&e))
    }

    fn unsubscribe(&self, ctx: &HostContext, id: u64) -> Result<(), plugin_api::Error> {
        self.bus
            .unsubscribe(&owner(ctx), id)
            .map_err(|e| to_plugin(&e))
    }

    fn call(
        &self,
        ctx: &HostContext,
        service: &str,
        input: &[u8],
    ) -> Result<Vec<u8>, plugin_api::Error> {
        if service == "tables" {
            let slot = self.instance(ctx.generation).ok_or_else(|| {
                plugin_api::Error::new(
                    "stale_context",
                    format!("`{}` has no live instance", ctx.plugin),
                )
            })?;
            let Some(tables) = &slot.tables else {
                let e = if self.tables.is_none() {
                    Error::BackendUnavailable {
                        kind: "tables",
                        message: "this host has no tables backend configured".into(),
                    }
                } else {
                    Error::TableAccessDenied {
                        plugin: ctx.plugin.clone(),
                        table: "(any)".into(),
                        allowed: Vec::new(),
                    }
                };
                return Err(to_plugin(&e));
            };
            let out = tables.handle(input).map_err(|e| to_plugin(&e))?;
            return serde_json::to_vec(&out).map_err(plugin_api::Error::from);
        }
        if service == "topics" || service == "buckets" {
            let slot = self.instance(ctx.generation).ok_or_else(|| {
                plugin_api::Error::new(
                    "stale_context",
                    format!("`{}` has no live instance", ctx.plugin),
                )
            })?;
            let (configured, kind) = if service == "topics" {
                (self.topics.is_some(), "topics")
            } else {
                (self.buckets.is_some(), "buckets")
            };
            let missing = || {
                if configured {
                    to_plugin(&if kind == "topics" {
                        Error::TopicAccessDenied {
                            plugin: ctx.plugin.clone(),
                            topic: "(any)".into(),
                            allowed: Vec::new(),
                        }
                    } else {
                        Error::BucketAccessDenied {
                            plugin: ctx.plugin.clone(),
                            bucket: "(any)".into(),
                            allowed: Vec::new(),
                        }
                    })
                } else {
                    to_plugin(&Error::BackendUnavailable {
                        kind,
                        message: format!("this host has no {kind} backend configured"),
                    })
                }
            };
            if service == "topics" {
                let topics = slot.topics.as_ref().ok_or_else(missing)?;
                let deliver: Arc<dyn crate::resources::topics::Deliver> =
                    Arc::new(slot.mailbox.clone());
                let out = topics
                    .handle(input, deliver, &|| self.bus.next_id())
                    .map_err(|e| to_plugin(&e))?;
                return serde_json::to_vec(&out).map_err(plugin_api::Error::from);
            }
            let buckets = slot.buckets.as_ref().ok_or_else(missing)?;
            return buckets.handle(input).map_err(|e| to_plugin(&e));
        }
        if service == "config" {
            let slot = self.instance(ctx.generation).ok_or_else(|| {
                plugin_api::Error::new(
                    "stale_context",
                    format!("`{}` has no live instance", ctx.plugin),
                )
            })?;
            let config = slot
                .settings
                .config
                .clone()
                .unwrap_or(serde_json::Value::Null);
            return serde_json::to_vec(&config).map_err(plugin_api::Error::from);
        }
        Err(plugin_api::Error::new(
            "unknown_service",
            format!(
                "plugin `{}` called host service `{service}`, which this host does not offer",
                ctx.plugin
            ),
        ))
    }
}
