//! One example [`Error`] per [`ErrorCode`], for the generated `docs/error-codes.md` (each shows
//! a real message and real details). The match has no wildcard: a new code needs an example.

#![cfg(any(test, feature = "__private"))]

use std::path::PathBuf;
use std::time::Duration;

use super::{Error, ErrorCode, Operation, ResultLimit};
use crate::manager::PluginState;

fn s(v: &str) -> String {
    v.to_owned()
}

impl ErrorCode {
    /// An error of this code with typical values, as `docs/error-codes.md` shows it.
    #[doc(hidden)]
    pub fn example(self) -> Error {
        let plugin = s("greeter");
        let lib = || PathBuf::from("/srv/plugins/libgreeter.so");
        match self {
            Self::BadRequest => Error::BadRequest {
                message: s("directory `/srv/missing` does not exist"),
            },
            Self::NotFound => Error::NotFound { name: plugin },
            Self::FileNotFound => Error::FileNotFound { path: lib() },
            Self::AlreadyLoaded => Error::AlreadyLoaded {
                name: plugin,
                path: lib(),
            },
            Self::InvalidPlugin => Error::NotALibrary {
                path: lib(),
                reason: s("not an ELF file"),
            },
            Self::IncompatibleAbi => Error::IncompatibleAbi {
                path: lib(),
                found: s("2.0"),
                accepted: s("1.0..=1.1"),
            },
            Self::UnsupportedPanicStrategy => Error::PanicAbort { path: lib() },
            Self::InvalidName => Error::InvalidName {
                name: s("My.Plugin"),
                reason: s("`.` is not one of a-z 0-9 - _"),
            },
            Self::DependencyNotFound => Error::DependencyNotFound {
                plugin,
                dependency: s("hello"),
            },
            Self::DependencyVersionMismatch => Error::DependencyVersion {
                plugin,
                dependency: s("hello"),
                required: s("^2"),
                found: s("1.0.0"),
            },
            Self::SelfDependency => Error::SelfDependency { plugin },
            Self::CircularDependency => Error::CircularDependency {
                cycle: vec![s("a"), s("b"), s("a")],
            },
            Self::DuplicatePlugin => Error::DuplicateName {
                name: plugin,
                paths: vec![lib(), PathBuf::from("/srv/plugins/libgreeter-old.so")],
            },
            Self::HasDependents => Error::HasDependents {
                name: s("hello"),
                dependents: vec![plugin],
            },
            Self::InitializeFailed => Error::InitializeFailed {
                plugin,
                plugin_code: s("invalid_config"),
                message: s("greeting must not be empty"),
            },
            Self::PluginFailed => Error::PluginFailed {
                plugin,
                plugin_code: s("panicked"),
                message: s("panicked: index out of bounds"),
                panicked: true,
            },
            Self::Timeout => Error::Timeout {
                plugin,
                operation: Operation::Execute,
                after: Duration::from_secs(30),
            },
            Self::FunctionNotFound => Error::FunctionNotFound {
                plugin,
                function: s("greett"),
            },
            Self::JobNotFound => Error::JobNotFound { id: 42 },
            Self::JobStateConflict => Error::JobStateConflict {
                id: 42,
                state: s("running"),
                operation: s("cancel"),
            },
            Self::JobKindNotFound => Error::JobKindNotFound {
                plugin: plugin.clone(),
                kind: s("send_emial"),
            },
            Self::ScheduleNotFound => Error::ScheduleNotFound {
                plugin: plugin.clone(),
                schedule: s("nightly"),
            },
            Self::InvalidInput => Error::InvalidInput {
                plugin,
                function: s("greet"),
                errors: vec![s("/name: 42 is not of type \"string\"")],
            },
            Self::InvalidRoute => Error::InvalidRoute {
                plugin: s("items"),
                method: s("GET"),
                path: s("/items/{id"),
                reason: s("parameter `{id` is not `{name}` with a name of letters, digits and `_`"),
            },
            Self::RouteConflict => Error::RouteConflict {
                plugin: s("items"),
                method: s("GET"),
                paths: vec![s("/items/{id}"), s("/items/{name}")],
            },
            Self::InvalidJob => Error::InvalidJob {
                plugin: s("mailer"),
                job: s("send_email"),
                reason: s("its function `send_email_fn` is not declared in the manifest"),
            },
            Self::InvalidSchedule => Error::InvalidSchedule {
                plugin: s("mailer"),
                schedule: s("nightly"),
                reason: s("time zone \"Europe/Atlantis\" is unknown"),
            },
            Self::FunctionMismatch => Error::FunctionMismatch {
                plugin,
                message: s("`greet` is declared in the manifest but not registered"),
            },
            Self::PluginDisabled => Error::Disabled { name: plugin },
            Self::PluginNotActive => Error::NotActive {
                name: plugin,
                state: PluginState::Stopping,
            },
            Self::DependencyNotDeclared => Error::DependencyNotDeclared {
                plugin,
                dependency: s("tables-demo"),
            },
            Self::StaleHandle => Error::Stale {
                plugin,
                target: s("hello"),
                generation: 3,
            },
            Self::InvalidEventName => Error::InvalidEventName {
                name: s("a::b"),
                reason: s("empty segment"),
            },
            Self::InvalidPattern => Error::InvalidPattern {
                pattern: s("da*"),
                reason: s("`*` must be a whole segment"),
            },
            Self::SubscriptionNotFound => Error::SubscriptionNotFound { id: 7 },
            Self::InvalidConfig => Error::InvalidConfig {
                key: s("timeouts.execute_ms"),
                message: s("must be greater than 0"),
            },
            Self::InvalidPluginConfig => Error::PluginConfigRejected {
                plugin,
                errors: vec![s("/greeting: 5 is not of type \"string\"")],
            },
            Self::InvalidOverrides => Error::InvalidOverrides {
                message: s("unknown table `orders`"),
            },
            Self::TableAccessDenied => Error::TableAccessDenied {
                plugin,
                table: crate::DeniedTable::Named(s("orders")),
                allowed: vec![s("users")],
            },
            Self::SqlError => Error::Sql {
                plugin,
                message: s("syntax error at or near \"SELEC\""),
                sqlstate: Some(s("42601")),
            },
            Self::SqlAccessDenied => Error::SqlAccessDenied {
                plugin,
                kind: s("function"),
                name: Some(s("pg_notify")),
            },
            Self::ResultTooLarge => Error::ResultTooLarge {
                plugin,
                limit: ResultLimit::MaxRows,
                max: 10_000,
            },
            Self::BackendUnavailable => Error::BackendUnavailable {
                kind: crate::BackendKind::Tables,
                message: s("this host has no tables backend configured"),
            },
            Self::TopicAccessDenied => Error::TopicAccessDenied {
                plugin,
                topic: s("audit"),
                allowed: vec![s("events")],
            },
            Self::BucketAccessDenied => Error::BucketAccessDenied {
                plugin,
                bucket: s("private"),
                allowed: vec![s("data")],
            },
            Self::InvalidKey => Error::InvalidKey {
                key: s("../etc/passwd"),
                reason: s("`..` segment"),
            },
            Self::PresignedUrlInvalid => Error::PresignedUrlInvalid {
                reason: s("expired"),
            },
            Self::InvalidPath => Error::InvalidPath {
                path: PathBuf::from("plugins/libgreeter.so"),
                reason: s("the admin API needs an absolute path"),
            },
            Self::FileTooLarge => Error::FileTooLarge {
                path: lib(),
                size: 300 << 20,
                limit: 256 << 20,
            },
            Self::DataDirInUse => Error::DataDirInUse {
                path: PathBuf::from("/var/lib/plugin-host"),
                holder: Some(4242),
            },
            Self::ConcurrentChange => Error::ConcurrentChange {
                plugin,
                attempts: 5,
            },
            Self::Internal => Error::Internal {
                message: s("request task failed"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_example_has_its_code_and_exactly_its_declared_details() {
        for code in ErrorCode::ALL {
            let e = code.example();
            assert_eq!(e.code(), *code);
            let details = e.details();
            let mut keys: Vec<&str> = details
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let mut declared: Vec<&str> = code.details_fields().iter().map(|f| f.0).collect();
            keys.sort_unstable();
            declared.sort_unstable();
            assert_eq!(keys, declared, "details of {code}");
        }
    }
}
