//! `/metrics`: the manager's counters and histograms, plugins by state, per-plugin call, event
//! and denial counters, the bus, (with the application listener) its requests by plugin and
//! route, and (with a job queue) the queue's families, in the Prometheus text format 0.0.4. Counters are read from the manager's and the
//! listener's atomics at scrape time; nothing is kept here.

use std::collections::HashSet;

use crate::app::AppMetrics;
use plugin_host::jobs::StateCount;
use plugin_host::metrics::{JobMetrics, Sample, family};
use plugin_host::{PluginInfo, PluginManager, PluginState, PluginStats};

/// The whole exposition; `app`: the application listener's metrics, when it runs; `jobs`: the
/// job queue's metrics and its jobs by plugin, kind and state (read from its store by the
/// caller: empty when the store did not answer), when the server has a queue.
pub(crate) fn render_metrics(
    manager: &PluginManager,
    app: Option<&AppMetrics>,
    jobs: Option<(&JobMetrics, &[StateCount])>,
) -> String {
    let mut out = String::new();
    plugin_host::metrics::render(&mut out, manager.metrics());
    let list = manager.list();
    plugins_by_state(&mut out, &list);
    // One series per plugin name: a failed record of a name that is also loaded (listed
    // first) would otherwise repeat a label set.
    let mut seen = HashSet::new();
    let plugins: Vec<&PluginInfo> = list.iter().filter(|p| seen.insert(&p.name)).collect();
    per_plugin_counters(&mut out, &plugins);
    resource_denials(&mut out, &plugins);
    family(
        &mut out,
        "plugin_host_bus_emitted_total",
        "counter",
        "Events emitted on the bus.",
        &[Sample {
            labels: vec![],
            value: manager.bus().stats().emitted as f64,
        }],
    );
    if let Some(app) = app {
        app.render(&mut out);
    }
    if let Some((metrics, counts)) = jobs {
        plugin_host::metrics::render_jobs(&mut out, metrics, counts, now_ms());
    }
    family(
        &mut out,
        "plugin_host_bus_subscriptions",
        "gauge",
        "Live bus subscriptions (plugins' and the host's, event streams included).",
        &[Sample {
            labels: vec![],
            value: manager.bus().subscription_count() as f64,
        }],
    );
    out
}

/// Now, in milliseconds since the Unix epoch (the queue's clock).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `plugin_host_plugins{state}`: how many plugins are in each state.
fn plugins_by_state(out: &mut String, list: &[PluginInfo]) {
    let states = [
        PluginState::Loading,
        PluginState::Active,
        PluginState::Disabled,
        PluginState::Stopping,
        PluginState::Failed,
    ];
    let by_state: Vec<Sample<'_>> = states
        .iter()
        .map(|s| Sample {
            labels: vec![("state", s.to_string())],
            value: list.iter().filter(|p| p.state == *s).count() as f64,
        })
        .collect();
    family(
        out,
        "plugin_host_plugins",
        "gauge",
        "Plugins by state.",
        &by_state,
    );
}

/// One counter family per plugin statistic, labelled by plugin.
fn per_plugin_counters(out: &mut String, plugins: &[&PluginInfo]) {
    type Stat = fn(&PluginStats) -> u64;
    let families: [(&str, &str, Stat); 5] = [
        (
            "plugin_host_execute_total",
            "Execute calls per plugin (dependency calls included).",
            |s| s.executes,
        ),
        (
            "plugin_host_execute_errors_total",
            "Execute calls that failed, panicked or timed out, per plugin.",
            |s| s.execute_errors,
        ),
        (
            "plugin_host_event_deliveries_total",
            "Events handled per plugin.",
            |s| s.events_delivered,
        ),
        (
            "plugin_host_event_failures_total",
            "Event handlers that failed or panicked, per plugin.",
            |s| s.events_failed,
        ),
        (
            "plugin_host_event_drops_total",
            "Events dropped because the plugin's mailbox stayed full.",
            |s| s.events_dropped,
        ),
    ];
    for (name, help, stat) in families {
        let samples: Vec<Sample<'_>> = plugins
            .iter()
            .map(|p| Sample {
                labels: vec![("plugin", p.name.clone())],
                value: stat(&p.stats) as f64,
            })
            .collect();
        family(out, name, "counter", help, &samples);
    }
}

/// `plugin_host_resource_denials_total{plugin,kind}`: refused table, topic and bucket accesses.
fn resource_denials(out: &mut String, plugins: &[&PluginInfo]) {
    type Stat = fn(&PluginStats) -> u64;
    let kinds: [(&str, Stat); 3] = [
        ("table", |s| s.tables_denied),
        ("topic", |s| s.topics_denied),
        ("bucket", |s| s.buckets_denied),
    ];
    let samples: Vec<Sample<'_>> = kinds
        .iter()
        .flat_map(|(kind, stat)| {
            plugins.iter().map(move |p| Sample {
                labels: vec![("plugin", p.name.clone()), ("kind", (*kind).to_owned())],
                value: stat(&p.stats) as f64,
            })
        })
        .collect();
    family(
        out,
        "plugin_host_resource_denials_total",
        "counter",
        "Resource accesses refused per plugin (by the host's check or by the backend).",
        &samples,
    );
}
