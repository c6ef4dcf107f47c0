//! What a plugin's calls into the host do: logging, dependency handles and calls, the bus, and
//! named host services (`plugin_api::wire`: each service's requests decoded into its shared
//! types, then handed to the plugin's scoped repository). Runs on plugin threads; never takes the transition lock, so a plugin
//! calling the host while a transition waits on it cannot deadlock.

use std::sync::Arc;

use plugin_api::wire::topics::Target;
use plugin_api::wire::{self, Op, Service};

use super::core::{Inner, Slot};
use super::types::PluginState;
use super::worker::Invocation;
use crate::bus::Owner;
use crate::error::{BackendKind, Error};
use crate::loader::{HostContext, HostServices};
use crate::resources::DeniedTable;

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
            PluginState::Active | PluginState::Disabled => Ok(slot.generation()),
            state => Err(to_plugin(&Error::NotActive {
                name: name.to_owned(),
                state,
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
            timeout: None,
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
        let Some(service) = Service::from_name(service) else {
            return Err(plugin_api::Error::new(
                "unknown_service",
                format!(
                    "plugin `{}` called host service `{service}`, which this host does not offer",
                    ctx.plugin
                ),
            ));
        };
        let slot = self.instance(ctx.generation).ok_or_else(|| {
            plugin_api::Error::new(
                "stale_context",
                format!("`{}` has no live instance", ctx.plugin),
            )
        })?;
        // One arm per service and no wildcard: a service added to the wire protocol does not
        // compile until it is offered here.
        let answer = match service {
            Service::Config => config_service(&slot, input),
            Service::Tables => self.tables_service(ctx, &slot, input),
            Service::Topics => self.topics_service(ctx, &slot, input),
            Service::Buckets => self.buckets_service(ctx, &slot, input),
        };
        answer.map_err(|e| to_plugin(&e))
    }
}

/// A request that does not decode as the service's: `bad_request`, naming the service.
fn malformed(service: Service, e: &dyn std::fmt::Display) -> Error {
    Error::BadRequest {
        message: format!("invalid {service} request: {e}"),
    }
}

/// The plugin's validated configuration, `null` when none was given.
fn config_service(slot: &Slot, input: &[u8]) -> Result<Vec<u8>, Error> {
    let wire::config::Get =
        serde_json::from_slice(input).map_err(|e| malformed(Service::Config, &e))?;
    let config: &<wire::config::Get as Op>::Response = slot
        .settings
        .config
        .as_ref()
        .unwrap_or(&serde_json::Value::Null);
    crate::resources::scope::answer(config)
}

impl Inner {
    /// Why a plugin without a scope of a service cannot use it: the host has no such backend,
    /// or the plugin may use none of its resources.
    fn no_scope(&self, ctx: &HostContext, denied: Denied<'_>) -> Error {
        let (kind, configured) = match denied {
            Denied::Table(_) => (BackendKind::Tables, self.tables.is_some()),
            Denied::Topic(_) => (BackendKind::Topics, self.topics.is_some()),
            Denied::Bucket(_) => (BackendKind::Buckets, self.buckets.is_some()),
        };
        if !configured {
            return Error::BackendUnavailable {
                kind,
                message: format!("this host has no {kind} backend configured"),
            };
        }
        let plugin = ctx.plugin.clone();
        match denied {
            Denied::Table(table) => Error::TableAccessDenied {
                plugin,
                table: table.map_or(DeniedTable::Statement, |t| DeniedTable::Named(t.to_owned())),
                allowed: Vec::new(),
            },
            Denied::Topic(topic) => Error::TopicAccessDenied {
                plugin,
                topic: topic.to_owned(),
                allowed: Vec::new(),
            },
            Denied::Bucket(bucket) => Error::BucketAccessDenied {
                plugin,
                bucket: bucket.to_owned(),
                allowed: Vec::new(),
            },
        }
    }

    fn tables_service(
        &self,
        ctx: &HostContext,
        slot: &Slot,
        input: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let request: wire::tables::Request =
            serde_json::from_slice(input).map_err(|e| malformed(Service::Tables, &e))?;
        let Some(tables) = &slot.tables else {
            return Err(self.no_scope(ctx, Denied::Table(request.table())));
        };
        tables.handle(request)
    }

    fn topics_service(
        &self,
        ctx: &HostContext,
        slot: &Slot,
        input: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let (request, body) = plugin_api::envelope::decode::<wire::topics::Request>(input)
            .map_err(|e| malformed(Service::Topics, &e.message))?;
        let Some(topics) = &slot.topics else {
            return Err(match request.target() {
                Target::Topic(topic) => self.no_scope(ctx, Denied::Topic(topic)),
                // A plugin without topics has no subscription either.
                Target::Subscription(id) => Error::SubscriptionNotFound { id },
            });
        };
        let deliver: Arc<dyn crate::resources::topics::Deliver> = Arc::new(slot.mailbox.clone());
        topics.handle(request, body, deliver, &|| self.bus.next_id())
    }

    fn buckets_service(
        &self,
        ctx: &HostContext,
        slot: &Slot,
        input: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let (request, body) = plugin_api::envelope::decode::<wire::buckets::Request>(input)
            .map_err(|e| malformed(Service::Buckets, &e.message))?;
        let Some(buckets) = &slot.buckets else {
            return Err(self.no_scope(ctx, Denied::Bucket(request.bucket())));
        };
        buckets.handle(request, body)
    }
}

/// What a plugin without a scope asked for.
enum Denied<'a> {
    /// A table by name, or raw SQL (`None`).
    Table(Option<&'a str>),
    /// A topic.
    Topic(&'a str),
    /// A bucket.
    Bucket(&'a str),
}
