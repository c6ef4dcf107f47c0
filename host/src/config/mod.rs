//! Configuration: the plugin manager's settings ([`ManagerConfig`]) and the host's
//! configuration file with its environment and command-line overrides ([`HostConfig`]).
//! Validated once, before anything starts; an invalid value is an error naming its key.

mod file;
mod manager;

pub use file::{
    AppSection, BackendsSection, BucketsSection, HostConfig, JobsSection, LimitsSection, LogFormat,
    LogSection, PluginSection, PluginsSection, TablesSection, TimeoutsSection, TopicsSection,
};
pub use manager::{
    BucketsConfig, JobStoreConfig, JobsConfig, ManagerConfig, S3Config, S3Credentials,
    TablesConfig, TopicsConfig,
};
