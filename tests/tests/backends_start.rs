//! Issue 11, section 10: backends that are not there. `serve` checks Kafka at start as it checks
//! PostgreSQL and S3, and refuses to start with `backend_unavailable`; a wrong S3 secret is
//! reported in one readable line that says which check failed and never shows the secret.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::process::Command;
use std::time::{Duration, Instant};

use integration::*;
use plugin_host::{BucketsConfig, ManagerConfig, PluginManager, S3Credentials, TopicsConfig};

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Runs `plugin-host serve` with `env`, expecting it to refuse to start; returns its stderr.
fn serve_refuses(env: &[(&str, &str)]) -> String {
    let tmp = temp_dir();
    let binary = host_binary(); // built on first use: not part of the time measured
    let started = Instant::now();
    let mut cmd = Command::new(binary);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .env_remove("PLUGIN_HOST_ADMIN_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "serve must refuse to start: {stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "it never listened: {stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    stderr
}

#[test]
fn issue_11_serve_refuses_to_start_when_no_kafka_broker_answers() {
    let port = closed_port();
    let brokers = format!("127.0.0.1:{port}");
    let stderr = serve_refuses(&[
        ("PLUGIN_HOST_TOPICS_BACKEND", "kafka"),
        ("PLUGIN_HOST_TOPICS_BROKERS", &brokers),
    ]);
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(error.contains("topics backend unavailable"), "{error}");
    assert!(error.contains(&brokers), "{error}");
    assert!(error.contains("PLUGIN_HOST_TOPICS_BROKERS"), "{error}");

    // The library refuses the same way, with the code.
    let e = PluginManager::new(ManagerConfig::default().with_topics(TopicsConfig::Kafka {
        brokers,
        prefix: "pht".into(),
    }))
    .unwrap_err();
    assert_eq!(e.code().as_str(), "backend_unavailable", "{e}");
}

#[test]
fn issue_11_a_wrong_s3_secret_is_one_readable_line() {
    let t = s3_target();
    let secret = "wrong-secret-9f8e7d6c5b4a";
    let mut config = s3_config(&s3_prefix("wrong-secret"));
    config.credentials = S3Credentials::new(&t.credentials.access_key_id, secret);
    let e = PluginManager::new(ManagerConfig::default().with_buckets(BucketsConfig::S3(config)))
        .unwrap_err();
    let message = e.chain();
    assert_eq!(e.code().as_str(), "backend_unavailable", "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(
        message.contains("HeadBucket"),
        "says which check: {message}"
    );
    assert!(
        message.contains("credentials"),
        "says what is wrong: {message}"
    );
    assert!(!message.contains(secret), "never the secret: {message}");
    for dump in ["ServiceError", "raw: Response", "ErrorMetadata", "source:"] {
        assert!(!message.contains(dump), "no SDK dump ({dump}): {message}");
    }

    // Through `serve`: one error line, no secret anywhere in the output.
    let stderr = serve_refuses(&[
        ("PLUGIN_HOST_BUCKETS_BACKEND", "s3"),
        ("PLUGIN_HOST_BUCKETS_ENDPOINT", &t.endpoint),
        ("PLUGIN_HOST_BUCKETS_BUCKET", &t.bucket),
        ("PLUGIN_HOST_BUCKETS_REGION", &t.region),
        ("PLUGIN_HOST_BUCKETS_PATH_STYLE", "true"),
        ("AWS_ACCESS_KEY_ID", &t.credentials.access_key_id),
        ("AWS_SECRET_ACCESS_KEY", secret),
    ]);
    assert!(!stderr.contains(secret), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("buckets backend unavailable"),
        "{stderr}"
    );
    assert!(errors[0].contains("credentials"), "{stderr}");
}
