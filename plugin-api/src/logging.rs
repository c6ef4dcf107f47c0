//! The `log` facade inside a plugin: records of `log::info!` and friends go to the host's log
//! through the host's `log` function, tagged with the plugin's name like [`Context::log`].
//!
//! Each loaded plugin is its own copy of its library, with its own `log` statics, so the logger
//! installed here serves exactly one plugin instance. The glue installs it when the instance is
//! created and sets the facade's maximum level to the host's, so records the operator's level
//! drops are not even formatted.
//!
//! [`Context::log`]: crate::Context::log

use std::sync::{PoisonError, RwLock};

use crate::abi::HostRef;

/// The host side of this library's instance (a plain table pointer and opaque key: holding it
/// keeps no context alive, so it does not count as a context clone left behind).
static HOST: RwLock<Option<HostRef>> = RwLock::new(None);

struct HostLogger;

static LOGGER: HostLogger = HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let host = *HOST.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(host) = host {
            // Levels match the ABI's numbering: error 1 .. trace 5.
            host.log(record.level() as u32, &record.args().to_string());
        }
    }

    fn flush(&self) {}
}

/// Points the facade at `host` and follows the host's level. A second call (the library is one
/// instance's copy, so only in tests) just replaces the host.
pub(crate) fn install(host: HostRef) {
    *HOST.write().unwrap_or_else(PoisonError::into_inner) = Some(host);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(match host.max_level() {
        0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        4 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    });
}
