//! Zero-downtime reload of a plugin's routes (issue 13, run by `scripts/bench.sh`): a real
//! `plugin-host serve --app-listen --watch` serves `hello`'s public route
//! `GET /plugins/hello/greet`, and client threads (keep-alive connections, one `ureq` agent
//! each) call it continuously while the plugin is reloaded N times through the admin API
//! (`POST /api/v1/plugins/hello/reload`), then N times through the watched folder (a fresh
//! copy of one of two builds that differ in their description, so each is a real content change,
//! renamed over the file). Each reload is waited for (the generation polled through the admin
//! API). Prints, per phase, the requests, the non-2xx answers and the transport errors, and exits
//! non-zero when any request failed: this is a correctness property, not a timing.
//!
//! `cargo bench -p integration --bench app_reload -- [--quick] [--reloads N] [--clients N]`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "bench binary"
)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration::*;

/// The phases a request is counted in.
const PHASES: [&str; 2] = ["admin API reloads", "watched-folder reloads"];

/// What the clients saw, per phase.
#[derive(Default)]
struct Tally {
    ok: [AtomicU64; 2],
    non_2xx: [AtomicU64; 2],
    errors: [AtomicU64; 2],
    /// The first failures, to say what went wrong.
    samples: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, counter: &[AtomicU64; 2], phase: usize, what: String) {
        counter[phase].fetch_add(1, Ordering::Relaxed);
        let mut samples = self.samples.lock().unwrap();
        if samples.len() < 10 {
            samples.push(format!("{}: {what}", PHASES[phase]));
        }
    }
}

struct Args {
    reloads: usize,
    clients: usize,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let quick = argv.iter().any(|a| a == "--quick");
    let number = |flag: &str| {
        argv.iter()
            .position(|a| a == flag)
            .map(|i| argv[i + 1].parse().expect("a number"))
    };
    Args {
        reloads: number("--reloads").unwrap_or(if quick { 10 } else { 100 }),
        clients: number("--clients").unwrap_or(4),
    }
}

fn main() {
    let args = args();
    build();
    let dir = temp_dir();
    let file = dir.path().join(lib_file("hello"));
    install("hello", &file);
    // The two builds the folder alternates between; staged outside the watched folder.
    let staging = temp_dir();
    let patched = staging.path().join("patched.so");
    let n = patched_copy(
        &plugin("hello"),
        &patched,
        b"answers greetings",
        b"answers greetingZ",
    );
    assert!(n >= 1, "the description is in the declaration");
    let builds = [plugin("hello"), patched];

    let plugins = dir.path().to_string_lossy().into_owned();
    let server = Server::start(
        &[
            "--plugins-dir",
            &plugins,
            "--watch",
            "--app-listen",
            "127.0.0.1:0",
        ],
        &[("PLUGIN_HOST_LOG", "info")],
    );
    let url = format!(
        "{}/plugins/hello/greet?name=w",
        server.app.as_deref().unwrap()
    );
    assert_eq!(generation(&server).1, "active", "hello loaded at start");
    println!(
        "plugin-host app reload bench: {} clients on GET /plugins/hello/greet, {} reloads through the admin API, then {} through the watched folder",
        args.clients, args.reloads, args.reloads
    );

    let tally = Arc::new(Tally::default());
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..args.clients)
        .map(|_| {
            let (tally, phase, stop, url) = (
                Arc::clone(&tally),
                Arc::clone(&phase),
                Arc::clone(&stop),
                url.clone(),
            );
            std::thread::spawn(move || client(&url, &tally, &phase, &stop))
        })
        .collect();

    let mut times = Vec::new();
    let started = Instant::now();
    times.push(reload_through_api(&server, args.reloads));
    let api_elapsed = started.elapsed();
    phase.store(1, Ordering::SeqCst);
    let started = Instant::now();
    times.push(reload_through_folder(&server, &file, &builds, args.reloads));
    let watch_elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }

    let mut failed = 0;
    for (i, (name, elapsed)) in PHASES.iter().zip([api_elapsed, watch_elapsed]).enumerate() {
        let ok = tally.ok[i].load(Ordering::Relaxed);
        let non_2xx = tally.non_2xx[i].load(Ordering::Relaxed);
        let errors = tally.errors[i].load(Ordering::Relaxed);
        let total = ok + non_2xx + errors;
        let reload = &mut times[i];
        reload.sort_unstable();
        println!(
            "{name}: {} reloads in {elapsed:.2?} (each p50={:.1?} max={:.1?}); {total} requests ({:.0}/s), non-2xx: {non_2xx}, errors: {errors}",
            reload.len(),
            reload[reload.len() / 2],
            reload[reload.len() - 1],
            total as f64 / elapsed.as_secs_f64(),
        );
        assert!(ok > 0, "{name}: no request succeeded");
        failed += non_2xx + errors;
    }
    let samples = tally.samples.lock().unwrap();
    if failed > 0 {
        println!("FAIL: {failed} requests failed during reloads; first: {samples:#?}");
        std::process::exit(1);
    }
    println!(
        "PASS: no request failed during {} reloads",
        2 * args.reloads
    );
}

/// Calls the route until `stop`, counting each answer in the current phase.
fn client(url: &str, tally: &Tally, phase: &AtomicUsize, stop: &AtomicBool) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    while !stop.load(Ordering::Relaxed) {
        let p = phase.load(Ordering::Relaxed);
        match agent.get(url).call() {
            Ok(r) => match r.into_json::<serde_json::Value>() {
                Ok(v) if v["greeting"] == "hello, w" => {
                    tally.ok[p].fetch_add(1, Ordering::Relaxed);
                }
                Ok(v) => tally.fail(&tally.non_2xx, p, format!("unexpected answer {v}")),
                Err(e) => tally.fail(&tally.errors, p, format!("reading the answer: {e}")),
            },
            Err(ureq::Error::Status(status, r)) => {
                let body = r.into_string().unwrap_or_default();
                tally.fail(&tally.non_2xx, p, format!("{status} {body}"));
            }
            Err(e) => tally.fail(&tally.errors, p, e.to_string()),
        }
    }
}

/// `hello`'s generation and state, through the admin API.
fn generation(server: &Server) -> (u64, String) {
    let (status, info) = server.call("GET", "/api/v1/plugins/hello", None);
    assert_eq!(status, 200, "{info}");
    (
        info["generation"].as_u64().unwrap(),
        info["state"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Reloads `hello` `n` times through `POST /api/v1/plugins/hello/reload`; the time of each.
fn reload_through_api(server: &Server, n: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let (before, _) = generation(server);
        let t = Instant::now();
        let (status, info) = server.call("POST", "/api/v1/plugins/hello/reload", None);
        assert_eq!(status, 200, "reload {i}: {info}");
        times.push(t.elapsed());
        let (after, state) = generation(server);
        assert!(
            after > before && state == "active",
            "reload {i}: generation {before} -> {after}, {state}"
        );
    }
    times
}

/// Replaces `file` `n` times with a fresh copy of the other build (renamed over it); waits each
/// time until the watcher reloaded it (a new generation, active). The time of each.
fn reload_through_folder(
    server: &Server,
    file: &Path,
    builds: &[std::path::PathBuf; 2],
    n: usize,
) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    let tmp = file.with_extension("tmp");
    for i in 0..n {
        let (before, _) = generation(server);
        // The folder holds the plain build at start: the first copy is the patched one.
        std::fs::copy(&builds[(i + 1) % 2], &tmp).unwrap();
        let t = Instant::now();
        std::fs::rename(&tmp, file).unwrap();
        let deadline = t + Duration::from_secs(20);
        loop {
            let (after, state) = generation(server);
            if after > before && state == "active" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replacement {i}: no reload within 20 s (generation {after}, {state})"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        times.push(t.elapsed());
    }
    times
}
