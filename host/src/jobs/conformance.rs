//! The [`JobStore`] contract as tests, for every backend: each check goes through the trait
//! only. A backend's tests call [`run_all`] on a fresh store, or each check on a fresh store of
//! its own.
//!
//! Checks may share a store: each uses plugin names of its own, and filters what the store
//! reports on every plugin (`counts`, `rescue`) to those. [`prune`] deletes finished jobs of
//! every plugin, so in a shared store it runs last.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use super::store::{
    AttemptRecord, AttemptStatus, Claimed, Finish, JobFilter, JobRecord, JobState, JobStore,
    NewJob, Next, Refused,
};

/// The time the checks run at (ms): 2023-11-14.
const T0: i64 = 1_700_000_000_000;
/// A lease's length (ms).
const LEASE: i64 = 30_000;
/// The hosts that claim.
const HOST: &str = "host-a";
const OTHER_HOST: &str = "host-b";

/// Runs every check, [`prune`] last.
pub(crate) fn run_all(store: &dyn JobStore) {
    enqueue_returns_ids(store);
    dedupe(store);
    claim_order(store);
    claim_waits_for_run_at(store);
    claim_only_listed_plugins(store);
    paused_kinds_are_not_claimed(store);
    concurrent_claims_never_share_a_job(store);
    fencing(store);
    finish_batch(store);
    transitions(store);
    release(store);
    heartbeat(store);
    rescue(store);
    list(store);
    retry(store);
    cancel(store);
    fire(store);
    counts(store);
    prune(store);
}

/// A plugin name no other check (or earlier run) uses.
fn plugin(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn job(plugin: &str, kind: &str) -> NewJob {
    NewJob {
        plugin: plugin.to_owned(),
        kind: kind.to_owned(),
        input: r#"{"n":1}"#.to_owned(),
        priority: 0,
        max_attempts: 3,
        run_at: T0,
        dedupe_key: None,
        source: "api".to_owned(),
        event_id: None,
    }
}

fn keyed(plugin: &str, kind: &str, key: &str) -> NewJob {
    NewJob {
        dedupe_key: Some(key.to_owned()),
        ..job(plugin, kind)
    }
}

fn enqueue_one(store: &dyn JobStore, job: NewJob) -> i64 {
    let ids = store.enqueue(&[job]).unwrap();
    assert_eq!(ids.len(), 1);
    ids[0].expect("a job without a waiting duplicate is enqueued")
}

fn claim_at(store: &dyn JobStore, plugin: &str, limit: usize, now: i64) -> Vec<Claimed> {
    store
        .claim(&[plugin.to_owned()], HOST, limit, now, now + LEASE)
        .unwrap()
}

fn ids(claimed: &[Claimed]) -> Vec<i64> {
    claimed.iter().map(|c| c.id).collect()
}

fn get(store: &dyn JobStore, id: i64, now: i64) -> (JobRecord, Vec<AttemptRecord>) {
    store.get(id, now).unwrap().expect("the job exists")
}

/// The end of `c`'s attempt, started at `started_at` and finished at `now`.
fn ending(c: &Claimed, next: Next, status: AttemptStatus, started_at: i64, now: i64) -> Finish {
    let failed = status != AttemptStatus::Succeeded;
    Finish {
        id: c.id,
        token: c.token,
        next,
        log: AttemptRecord {
            job_id: c.id,
            attempt: c.attempt,
            plugin: c.plugin.clone(),
            version: "1.0.0".to_owned(),
            kind: c.kind.clone(),
            host: HOST.to_owned(),
            started_at,
            duration_ms: now - started_at,
            status,
            error: failed.then(|| format!("attempt {} failed", c.attempt)),
            input: c.input.clone(),
            output: (!failed).then(|| r#"{"ok":true}"#.to_owned()),
        },
        now,
    }
}

/// Claims the one due job of `plugin` and finishes it as `next` at `now`.
fn run_once(store: &dyn JobStore, plugin: &str, next: Next, now: i64) -> Claimed {
    let claimed = claim_at(store, plugin, 1, now);
    assert_eq!(claimed.len(), 1, "one job of {plugin} is due at {now}");
    let c = claimed.into_iter().next().unwrap();
    let status = match next {
        Next::Complete => AttemptStatus::Succeeded,
        _ => AttemptStatus::Failed,
    };
    assert!(store.finish(&ending(&c, next, status, now, now)).unwrap());
    c
}

fn list_ids(store: &dyn JobStore, filter: JobFilter, now: i64) -> Vec<i64> {
    store
        .list(&filter, now)
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect()
}

/// Enqueue returns one new id per job, in order, and stores the job as given.
pub(crate) fn enqueue_returns_ids(store: &dyn JobStore) {
    assert_eq!(store.enqueue(&[]).unwrap(), Vec::<Option<i64>>::new());
    let p = plugin("enqueue");
    let mut first = job(&p, "send");
    first.priority = -2;
    first.max_attempts = 7;
    first.run_at = T0 + 5;
    first.source = "event:form:submitted".to_owned();
    first.event_id = Some("ev-1".to_owned());
    first.dedupe_key = Some("k".to_owned());
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let ids = store
        .enqueue(&[first.clone(), job(&p, "send"), job(&p, "clean")])
        .unwrap();
    let ids: Vec<i64> = ids.into_iter().map(Option::unwrap).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let (j, attempts) = get(store, ids[0], T0 + 5);
    assert!(attempts.is_empty());
    assert_eq!(
        (j.id, j.plugin.as_str(), j.kind.as_str(), j.state),
        (ids[0], p.as_str(), "send", JobState::Available)
    );
    assert_eq!((j.priority, j.input.as_str()), (-2, first.input.as_str()));
    assert_eq!((j.attempt, j.max_attempts, j.run_at), (0, 7, T0 + 5));
    assert_eq!(j.source, "event:form:submitted");
    assert_eq!(j.event_id.as_deref(), Some("ev-1"));
    assert_eq!(j.dedupe_key.as_deref(), Some("k"));
    assert_eq!((j.finished_at, &j.last_error), (None, &None));
    assert_eq!((&j.lease_host, j.lease_until), (&None, None));
    // `created_at` comes from the host's clock (the caller gives no time to enqueue).
    let created = u128::try_from(j.created_at).unwrap();
    assert!(
        created + 1_000 >= before && created <= before + 60_000,
        "{created} vs {before}"
    );
    assert_eq!(get(store, ids[0], T0).0.state, JobState::Scheduled);
    assert!(store.get(i64::MAX, T0).unwrap().is_none());
}

/// A second waiting job with the same plugin, kind and key is not enqueued; once the first
/// runs, a new one is; a job going back to waiting while another waits with its key is not
/// refused.
pub(crate) fn dedupe(store: &dyn JobStore) {
    let p = plugin("dedupe");
    let first = enqueue_one(store, keyed(&p, "send", "k1"));
    assert_eq!(store.enqueue(&[keyed(&p, "send", "k1")]).unwrap(), [None]);
    // Other kinds, other plugins and jobs without a key are not duplicates.
    enqueue_one(store, keyed(&p, "other", "k1"));
    enqueue_one(store, keyed(&plugin("dedupe-b"), "send", "k1"));
    enqueue_one(store, job(&p, "send"));
    enqueue_one(store, job(&p, "send"));
    // Within one batch, one of two jobs with the same key is enqueued.
    let batch = store
        .enqueue(&[
            keyed(&p, "send", "k2"),
            keyed(&p, "send", "k2"),
            keyed(&p, "send", "k3"),
        ])
        .unwrap();
    assert_eq!(batch.iter().filter(|id| id.is_some()).count(), 1 + 1);
    assert!(batch[2].is_some());
    assert!(batch[0].is_some() != batch[1].is_some());

    // Once the first is running, a job with its key is accepted.
    let claimed = claim_at(store, &p, 1, T0);
    assert_eq!(ids(&claimed), [first]);
    let second = enqueue_one(store, keyed(&p, "send", "k1"));
    assert_eq!(store.enqueue(&[keyed(&p, "send", "k1")]).unwrap(), [None]);
    // The first fails and waits again: that is not refused, and both wait.
    let c = &claimed[0];
    let retry = ending(
        c,
        Next::Retry { at: T0 + 10 },
        AttemptStatus::Failed,
        T0,
        T0 + 1,
    );
    assert!(store.finish(&retry).unwrap());
    assert_eq!(get(store, first, T0 + 10).0.state, JobState::Retryable);
    assert_eq!(get(store, second, T0 + 10).0.state, JobState::Available);
    assert_eq!(store.enqueue(&[keyed(&p, "send", "k1")]).unwrap(), [None]);
}

/// Claims go by priority, then `run_at`, then id, and count the attempt.
pub(crate) fn claim_order(store: &dyn JobStore) {
    let p = plugin("order");
    let mk = |priority: i16, run_at: i64| NewJob {
        priority,
        run_at,
        ..job(&p, "send")
    };
    let a = enqueue_one(store, mk(5, T0 - 10));
    let b = enqueue_one(store, mk(0, T0 - 5));
    let c = enqueue_one(store, mk(0, T0 - 20));
    let d = enqueue_one(store, mk(0, T0 - 20));
    let e = enqueue_one(store, mk(-1, T0));
    let first = claim_at(store, &p, 2, T0);
    assert_eq!(ids(&first), [e, c]);
    let rest = claim_at(store, &p, 10, T0);
    assert_eq!(ids(&rest), [d, b, a]);
    assert!(claim_at(store, &p, 10, T0).is_empty());
    let all: Vec<&Claimed> = first.iter().chain(&rest).collect();
    let tokens: HashSet<i64> = all.iter().map(|c| c.token).collect();
    assert_eq!(tokens.len(), all.len(), "every claim has its own token");
    let c0 = all[0];
    assert_eq!((c0.plugin.as_str(), c0.kind.as_str()), (p.as_str(), "send"));
    assert_eq!((c0.attempt, c0.max_attempts, c0.run_at), (1, 3, T0));
    assert_eq!(c0.input, r#"{"n":1}"#);
    let (j, _) = get(store, e, T0);
    assert_eq!((j.state, j.attempt), (JobState::Running, 1));
    assert_eq!(j.created_at, c0.created_at);
    assert_eq!(
        (j.lease_host.as_deref(), j.lease_until),
        (Some(HOST), Some(T0 + LEASE))
    );
    assert!(
        store
            .claim(std::slice::from_ref(&p), HOST, 0, T0, T0 + LEASE)
            .unwrap()
            .is_empty()
    );
}

/// A job whose `run_at` is in the future is claimed only once it is due.
pub(crate) fn claim_waits_for_run_at(store: &dyn JobStore) {
    let p = plugin("later");
    let id = enqueue_one(
        store,
        NewJob {
            run_at: T0 + 1_000,
            ..job(&p, "send")
        },
    );
    assert!(claim_at(store, &p, 10, T0).is_empty());
    assert!(claim_at(store, &p, 10, T0 + 999).is_empty());
    assert_eq!(ids(&claim_at(store, &p, 10, T0 + 1_000)), [id]);
}

/// Only jobs of the listed plugins are claimed.
pub(crate) fn claim_only_listed_plugins(store: &dyn JobStore) {
    let (p, q, r) = (plugin("listed"), plugin("listed"), plugin("unlisted"));
    let a = enqueue_one(store, job(&p, "send"));
    let b = enqueue_one(store, job(&q, "send"));
    let c = enqueue_one(store, job(&r, "send"));
    assert!(
        store
            .claim(&[], HOST, 10, T0, T0 + LEASE)
            .unwrap()
            .is_empty()
    );
    let got = store
        .claim(&[p.clone(), q.clone()], HOST, 10, T0, T0 + LEASE)
        .unwrap();
    assert_eq!(ids(&got), [a, b]);
    assert_eq!(get(store, c, T0).0.state, JobState::Available);
}

/// A paused kind is not claimed (other kinds are); once resumed it is.
pub(crate) fn paused_kinds_are_not_claimed(store: &dyn JobStore) {
    let p = plugin("paused");
    let send = enqueue_one(store, job(&p, "send"));
    let clean = enqueue_one(store, job(&p, "clean"));
    store.set_paused(&p, "send", true).unwrap();
    store.set_paused(&p, "send", true).unwrap();
    let mine = |store: &dyn JobStore| -> Vec<(String, String)> {
        let paused = store.paused().unwrap();
        paused.into_iter().filter(|(q, _)| *q == p).collect()
    };
    assert_eq!(mine(store), [(p.clone(), "send".to_owned())]);
    assert_eq!(ids(&claim_at(store, &p, 10, T0)), [clean]);
    assert!(claim_at(store, &p, 10, T0).is_empty());
    store.set_paused(&p, "send", false).unwrap();
    assert!(mine(store).is_empty());
    assert_eq!(ids(&claim_at(store, &p, 10, T0)), [send]);
    store.set_paused(&p, "send", false).unwrap();
}

/// Two threads claiming from 200 jobs never get the same job and together get all.
pub(crate) fn concurrent_claims_never_share_a_job(store: &dyn JobStore) {
    let p = plugin("race");
    let jobs: Vec<NewJob> = (0..200).map(|_| job(&p, "send")).collect();
    let all: BTreeSet<i64> = store
        .enqueue(&jobs)
        .unwrap()
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(all.len(), 200);
    let plugins = [p.clone()];
    let claim_until_empty = |host: &str| {
        let mut got = Vec::new();
        loop {
            let batch = store.claim(&plugins, host, 7, T0, T0 + LEASE).unwrap();
            if batch.is_empty() {
                return got;
            }
            got.extend(batch.into_iter().map(|c| c.id));
        }
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| claim_until_empty(HOST));
        let b = s.spawn(|| claim_until_empty(OTHER_HOST));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut seen = BTreeSet::new();
    for id in a.iter().chain(&b) {
        assert!(seen.insert(*id), "job {id} claimed twice");
    }
    assert_eq!(seen, all);
    assert!(claim_at(store, &p, 10, T0).is_empty());
}

/// A finish with a token that does not hold changes nothing but the log.
pub(crate) fn fencing(store: &dyn JobStore) {
    let p = plugin("fence");
    let id = enqueue_one(store, job(&p, "send"));
    let c = claim_at(store, &p, 1, T0).remove(0);
    let mut wrong = ending(&c, Next::Complete, AttemptStatus::Succeeded, T0, T0 + 5);
    wrong.token = c.token + 1;
    assert!(!store.finish(&wrong).unwrap());
    let (j, attempts) = get(store, id, T0 + 5);
    assert_eq!(
        (j.state, j.attempt, j.finished_at),
        (JobState::Running, 1, None)
    );
    assert_eq!(j.lease_host.as_deref(), Some(HOST));
    assert_eq!(attempts.len(), 1, "the log row is written");
    assert_eq!(attempts[0].status, AttemptStatus::Succeeded);
    let right = ending(&c, Next::Complete, AttemptStatus::Succeeded, T0, T0 + 6);
    assert!(store.finish(&right).unwrap());
    let (j, attempts) = get(store, id, T0 + 6);
    assert_eq!(
        (j.state, j.finished_at),
        (JobState::Completed, Some(T0 + 6))
    );
    assert_eq!(attempts.len(), 2);
    // The claim is spent: finishing again does not hold.
    assert!(!store.finish(&right).unwrap());
    assert_eq!(get(store, id, T0 + 7).0.state, JobState::Completed);
}

/// A batch of ends: each takes effect as on its own, in one transaction; a stale token in
/// the batch changes nothing of its job and does not stop the others.
pub(crate) fn finish_batch(store: &dyn JobStore) {
    let p = plugin("batch");
    for _ in 0..4 {
        enqueue_one(store, keyed(&p, "send", &plugin("key")));
    }
    let c = claim_at(store, &p, 4, T0);
    assert_eq!(c.len(), 4);
    let mut stale = ending(&c[2], Next::Complete, AttemptStatus::Succeeded, T0, T0 + 3);
    stale.token = c[2].token + 1;
    let batch = [
        ending(&c[0], Next::Complete, AttemptStatus::Succeeded, T0, T0 + 3),
        ending(
            &c[1],
            Next::Retry { at: T0 + 1_000 },
            AttemptStatus::Failed,
            T0,
            T0 + 3,
        ),
        stale,
        ending(&c[3], Next::Discard, AttemptStatus::Failed, T0, T0 + 3),
    ];
    assert_eq!(
        store.finish_many(&batch).unwrap(),
        vec![true, true, false, true]
    );
    let (j, a) = get(store, c[0].id, T0 + 4);
    assert_eq!(
        (j.state, j.finished_at),
        (JobState::Completed, Some(T0 + 3))
    );
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].output.as_deref(), Some(r#"{"ok":true}"#));
    let (j, a) = get(store, c[1].id, T0 + 4);
    assert_eq!((j.state, j.run_at), (JobState::Retryable, T0 + 1_000));
    assert_eq!(j.last_error.as_deref(), Some("attempt 1 failed"));
    assert_eq!(a[0].status, AttemptStatus::Failed);
    let (j, a) = get(store, c[2].id, T0 + 4);
    assert_eq!(j.state, JobState::Running, "a stale token changes nothing");
    assert_eq!(a.len(), 1, "its attempt is logged");
    let (j, _) = get(store, c[3].id, T0 + 4);
    assert_eq!(
        (j.state, j.finished_at),
        (JobState::Discarded, Some(T0 + 3))
    );
    assert!(store.finish_many(&[]).unwrap().is_empty());
}

/// Retry, complete and discard, and the execution log in order.
pub(crate) fn transitions(store: &dyn JobStore) {
    let p = plugin("flow");
    let id = enqueue_one(store, job(&p, "send"));
    let first = run_once(store, &p, Next::Retry { at: T0 + 500 }, T0 + 10);
    let (j, _) = get(store, id, T0 + 10);
    assert_eq!(
        (j.state, j.attempt, j.run_at),
        (JobState::Retryable, 1, T0 + 500)
    );
    assert_eq!(j.last_error.as_deref(), Some("attempt 1 failed"));
    assert_eq!(
        (j.finished_at, &j.lease_host, j.lease_until),
        (None, &None, None)
    );
    assert!(claim_at(store, &p, 1, T0 + 499).is_empty());
    let second = run_once(store, &p, Next::Complete, T0 + 600);
    assert_eq!((first.attempt, second.attempt), (1, 2));
    assert_ne!(first.token, second.token);
    let (j, attempts) = get(store, id, T0 + 600);
    assert_eq!((j.state, j.attempt), (JobState::Completed, 2));
    assert_eq!(j.finished_at, Some(T0 + 600));
    assert_eq!((&j.lease_host, j.lease_until), (&None, None));
    let seen: Vec<(u32, AttemptStatus, i64)> = attempts
        .iter()
        .map(|a| (a.attempt, a.status, a.started_at))
        .collect();
    assert_eq!(
        seen,
        [
            (1, AttemptStatus::Failed, T0 + 10),
            (2, AttemptStatus::Succeeded, T0 + 600)
        ]
    );
    let a = &attempts[1];
    assert_eq!(
        (a.job_id, a.plugin.as_str(), a.kind.as_str()),
        (id, p.as_str(), "send")
    );
    assert_eq!((a.version.as_str(), a.host.as_str()), ("1.0.0", HOST));
    assert_eq!((a.duration_ms, a.error.as_deref()), (0, None));
    assert_eq!(
        (a.input.as_str(), a.output.as_deref()),
        (r#"{"n":1}"#, Some(r#"{"ok":true}"#))
    );
    assert_eq!(attempts[0].error.as_deref(), Some("attempt 1 failed"));

    let gone = enqueue_one(store, job(&p, "send"));
    run_once(store, &p, Next::Discard, T0 + 700);
    let (j, attempts) = get(store, gone, T0 + 700);
    assert_eq!(
        (j.state, j.finished_at),
        (JobState::Discarded, Some(T0 + 700))
    );
    assert_eq!(j.last_error.as_deref(), Some("attempt 1 failed"));
    assert_eq!(attempts.len(), 1);
    assert!(claim_at(store, &p, 10, T0 + 10_000).is_empty());
}

/// A released job waits again, its attempt not counted; a wrong token releases nothing.
pub(crate) fn release(store: &dyn JobStore) {
    let p = plugin("release");
    let id = enqueue_one(store, job(&p, "send"));
    let c = claim_at(store, &p, 1, T0).remove(0);
    store.release(id, c.token + 1).unwrap();
    assert_eq!(get(store, id, T0).0.state, JobState::Running);
    store.release(id, c.token).unwrap();
    let (j, attempts) = get(store, id, T0);
    assert_eq!((j.state, j.attempt), (JobState::Available, 0));
    assert_eq!((&j.lease_host, j.lease_until), (&None, None));
    assert!(attempts.is_empty());
    let again = claim_at(store, &p, 1, T0).remove(0);
    assert_eq!((again.id, again.attempt), (id, 1));
    // A stale token (of the released claim) does not finish the new one.
    let stale = ending(&c, Next::Complete, AttemptStatus::Succeeded, T0, T0);
    assert!(!store.finish(&stale).unwrap());
    // A released further attempt waits as retryable.
    let retry = ending(
        &again,
        Next::Retry { at: T0 },
        AttemptStatus::Failed,
        T0,
        T0,
    );
    assert!(store.finish(&retry).unwrap());
    let third = claim_at(store, &p, 1, T0).remove(0);
    assert_eq!(third.attempt, 2);
    store.release(id, third.token).unwrap();
    let (j, _) = get(store, id, T0);
    assert_eq!((j.state, j.attempt), (JobState::Retryable, 1));
}

/// A heartbeat extends the leases its host holds with those tokens, and no other.
pub(crate) fn heartbeat(store: &dyn JobStore) {
    let p = plugin("beat");
    enqueue_one(store, job(&p, "send"));
    enqueue_one(store, job(&p, "send"));
    let c = claim_at(store, &p, 2, T0);
    let tokens: Vec<i64> = c.iter().map(|c| c.token).collect();
    assert_eq!(
        store.heartbeat(OTHER_HOST, &tokens, T0 + 90_000).unwrap(),
        0
    );
    assert_eq!(store.heartbeat(HOST, &[], T0 + 90_000).unwrap(), 0);
    assert_eq!(store.heartbeat(HOST, &tokens, T0 + 90_000).unwrap(), 2);
    assert_eq!(get(store, c[0].id, T0).0.lease_until, Some(T0 + 90_000));
    let rescued = store.rescue(T0 + LEASE + 1).unwrap();
    assert!(rescued.iter().all(|r| r.plugin != p), "{rescued:?}");
    assert_eq!(get(store, c[1].id, T0).0.state, JobState::Running);
    // A finished job's token extends nothing.
    let done = ending(&c[0], Next::Complete, AttemptStatus::Succeeded, T0, T0 + 1);
    assert!(store.finish(&done).unwrap());
    assert_eq!(store.heartbeat(HOST, &tokens, T0 + 99_000).unwrap(), 1);
}

/// Expired leases are requeued (or discarded on the last attempt), each lost attempt logged;
/// the old holder's finish no longer holds.
pub(crate) fn rescue(store: &dyn JobStore) {
    let p = plugin("rescue");
    let again = enqueue_one(store, job(&p, "send"));
    let last = enqueue_one(
        store,
        NewJob {
            max_attempts: 1,
            ..job(&p, "send")
        },
    );
    let claimed = claim_at(store, &p, 2, T0);
    assert_eq!(ids(&claimed), [again, last]);
    let mine = |now: i64| -> Vec<(i64, u32, bool)> {
        let rescued = store.rescue(now).unwrap();
        rescued
            .into_iter()
            .filter(|r| r.plugin == p)
            .map(|r| {
                assert_eq!(r.kind, "send");
                (r.id, r.attempt, r.discarded)
            })
            .collect()
    };
    assert!(
        mine(T0 + LEASE).is_empty(),
        "a lease ending now has not expired"
    );
    let now = T0 + LEASE + 1;
    assert_eq!(mine(now), [(again, 1, false), (last, 1, true)]);
    assert!(mine(now + 1).is_empty());

    let (j, attempts) = get(store, again, now);
    assert_eq!(
        (j.state, j.attempt, j.run_at),
        (JobState::Retryable, 1, now)
    );
    assert_eq!((j.finished_at, &j.lease_host), (None, &None));
    assert_eq!(attempts.len(), 1);
    let a = &attempts[0];
    assert_eq!(
        (a.attempt, a.status, a.host.as_str()),
        (1, AttemptStatus::Lost, HOST)
    );
    assert!(a.error.as_deref().unwrap().starts_with("lease expired"));
    let (j, attempts) = get(store, last, now);
    assert_eq!((j.state, j.finished_at), (JobState::Discarded, Some(now)));
    assert_eq!(attempts[0].status, AttemptStatus::Lost);

    // The old holder comes back: its finish does not hold, but it is logged.
    let late = ending(
        &claimed[0],
        Next::Complete,
        AttemptStatus::Succeeded,
        T0,
        now + 5,
    );
    assert!(!store.finish(&late).unwrap());
    let (j, attempts) = get(store, again, now + 5);
    assert_eq!(j.state, JobState::Retryable);
    assert_eq!(attempts.len(), 2);
    let next = claim_at(store, &p, 10, now + 5);
    assert_eq!(ids(&next), [again]);
    assert_eq!(next[0].attempt, 2);
    assert!(!store.finish(&late).unwrap());
}

/// Listing filters by plugin, kind, state (scheduled apart from available), id and count,
/// newest first.
pub(crate) fn list(store: &dyn JobStore) {
    let p = plugin("list");
    let later = T0 + 10_000;
    let j1 = enqueue_one(store, job(&p, "a"));
    let j2 = enqueue_one(
        store,
        NewJob {
            run_at: later,
            ..job(&p, "a")
        },
    );
    let j3 = enqueue_one(store, job(&p, "b"));
    let j4 = enqueue_one(store, job(&p, "b"));
    enqueue_one(store, job(&plugin("list-other"), "a"));
    store.set_paused(&p, "a", true).unwrap();
    assert_eq!(ids(&claim_at(store, &p, 1, T0)), [j3]);
    store.set_paused(&p, "a", false).unwrap();

    let f =
        |kind: Option<&str>, state: Option<JobState>, before: Option<i64>, limit: u32| JobFilter {
            plugin: Some(p.clone()),
            kind: kind.map(str::to_owned),
            state,
            before,
            limit,
        };
    assert_eq!(
        list_ids(store, f(None, None, None, 100), T0),
        [j4, j3, j2, j1]
    );
    let shown: Vec<JobState> = store
        .list(&f(None, None, None, 100), T0)
        .unwrap()
        .into_iter()
        .map(|j| j.state)
        .collect();
    use JobState::{Available, Completed, Running, Scheduled};
    assert_eq!(shown, [Available, Running, Scheduled, Available]);
    assert_eq!(list_ids(store, f(Some("a"), None, None, 100), T0), [j2, j1]);
    assert_eq!(
        list_ids(store, f(None, Some(Scheduled), None, 100), T0),
        [j2]
    );
    assert_eq!(
        list_ids(store, f(None, Some(Available), None, 100), T0),
        [j4, j1]
    );
    assert_eq!(list_ids(store, f(None, Some(Running), None, 100), T0), [j3]);
    assert!(list_ids(store, f(None, Some(Completed), None, 100), T0).is_empty());
    assert_eq!(
        list_ids(store, f(Some("b"), Some(Available), None, 100), T0),
        [j4]
    );
    // Once due, a scheduled job is available.
    assert_eq!(
        list_ids(store, f(None, Some(Available), None, 100), later),
        [j4, j2, j1]
    );
    assert!(list_ids(store, f(None, Some(Scheduled), None, 100), later).is_empty());
    // Paging.
    assert_eq!(list_ids(store, f(None, None, Some(j3), 100), T0), [j2, j1]);
    assert_eq!(list_ids(store, f(None, None, None, 2), T0), [j4, j3]);
    assert_eq!(list_ids(store, f(None, None, Some(j4), 1), T0), [j3]);
    assert!(list_ids(store, f(None, None, Some(j1), 100), T0).is_empty());
    // Without a plugin, other plugins' jobs show too.
    let everyone = list_ids(
        store,
        JobFilter {
            limit: 1_000,
            ..JobFilter::default()
        },
        T0,
    );
    assert!(everyone.len() > 4 && everyone.windows(2).all(|w| w[0] > w[1]));
}

/// Retry makes a discarded or completed job wait again; any other state is refused.
pub(crate) fn retry(store: &dyn JobStore) {
    let p = plugin("retry");
    let dead = enqueue_one(store, job(&p, "send"));
    run_once(store, &p, Next::Discard, T0);
    let back = store.retry(dead, 2, T0 + 100).unwrap().unwrap();
    assert_eq!(
        (back.id, back.state, back.run_at),
        (dead, JobState::Available, T0 + 100)
    );
    assert_eq!(
        (back.attempt, back.max_attempts, back.finished_at),
        (1, 3, None)
    );
    assert_eq!(back.last_error.as_deref(), Some("attempt 1 failed"));
    assert_eq!(get(store, dead, T0 + 100).0, back);
    let c = claim_at(store, &p, 10, T0 + 100);
    assert_eq!(
        (ids(&c), c[0].attempt, c[0].max_attempts),
        (vec![dead], 2, 3)
    );
    assert_eq!(
        store.retry(dead, 1, T0 + 100).unwrap(),
        Err(Refused::State(JobState::Running))
    );
    let done = ending(
        &c[0],
        Next::Complete,
        AttemptStatus::Succeeded,
        T0 + 100,
        T0 + 200,
    );
    assert!(store.finish(&done).unwrap());
    let back = store.retry(dead, 1, T0 + 300).unwrap().unwrap();
    assert_eq!(
        (back.state, back.attempt, back.max_attempts),
        (JobState::Available, 2, 3)
    );

    assert_eq!(
        store.retry(dead, 1, T0 + 300).unwrap(),
        Err(Refused::State(JobState::Available))
    );
    let later = enqueue_one(
        store,
        NewJob {
            run_at: T0 + 10_000,
            ..job(&p, "send")
        },
    );
    assert_eq!(
        store.retry(later, 1, T0).unwrap(),
        Err(Refused::State(JobState::Scheduled))
    );
    assert_eq!(
        store.retry(i64::MAX, 1, T0).unwrap(),
        Err(Refused::NotFound)
    );
    // A job waiting for its backoff is made due now.
    let q = plugin("retry-waiting");
    let waiting = enqueue_one(store, job(&q, "send"));
    run_once(store, &q, Next::Retry { at: T0 + 60_000 }, T0);
    let now = store.retry(waiting, 3, T0 + 10).unwrap().unwrap();
    assert_eq!(
        (now.state, now.run_at, now.attempt, now.max_attempts),
        (JobState::Available, T0 + 10, 1, 4)
    );
    assert_eq!(ids(&claim_at(store, &q, 10, T0 + 10)), [waiting]);
}

/// Cancel ends a waiting job; any other state is refused.
pub(crate) fn cancel(store: &dyn JobStore) {
    let p = plugin("cancel");
    let waiting = enqueue_one(store, job(&p, "send"));
    let running = enqueue_one(store, job(&p, "send"));
    let again = enqueue_one(store, job(&p, "send"));
    let gone = store.cancel(waiting, T0 + 5).unwrap().unwrap();
    assert_eq!(
        (gone.id, gone.state, gone.finished_at),
        (waiting, JobState::Cancelled, Some(T0 + 5))
    );
    assert_eq!(get(store, waiting, T0 + 5).0, gone);
    assert_eq!(
        store.cancel(waiting, T0 + 6).unwrap(),
        Err(Refused::State(JobState::Cancelled))
    );
    let c = claim_at(store, &p, 1, T0 + 6);
    assert_eq!(ids(&c), [running]);
    assert_eq!(
        store.cancel(running, T0 + 6).unwrap(),
        Err(Refused::State(JobState::Running))
    );
    // A retryable job waits too.
    let r = claim_at(store, &p, 1, T0 + 6).remove(0);
    assert_eq!(r.id, again);
    let fail = ending(
        &r,
        Next::Retry { at: T0 + 50 },
        AttemptStatus::Failed,
        T0 + 6,
        T0 + 7,
    );
    assert!(store.finish(&fail).unwrap());
    let gone = store.cancel(again, T0 + 8).unwrap().unwrap();
    assert_eq!(gone.state, JobState::Cancelled);
    assert!(claim_at(store, &p, 10, T0 + 100).is_empty());
    assert_eq!(store.cancel(i64::MAX, T0).unwrap(), Err(Refused::NotFound));
}

/// A schedule fires once per `fire_at`, and never for an older one, even from two threads.
pub(crate) fn fire(store: &dyn JobStore) {
    let p = plugin("fire");
    let mut j = job(&p, "clean");
    j.source = "schedule:nightly".to_owned();
    assert_eq!(store.last_fire(&p, "nightly").unwrap(), None);
    let id = store.fire("nightly", T0, &j).unwrap().expect("first fire");
    assert_eq!(store.last_fire(&p, "nightly").unwrap(), Some(T0));
    let (rec, _) = get(store, id, T0);
    assert_eq!(
        (rec.plugin.as_str(), rec.kind.as_str()),
        (p.as_str(), "clean")
    );
    assert_eq!(rec.source, "schedule:nightly");
    assert_eq!(store.fire("nightly", T0, &j).unwrap(), None);
    assert_eq!(store.fire("nightly", T0 - 1, &j).unwrap(), None);
    assert_eq!(store.last_fire(&p, "nightly").unwrap(), Some(T0));
    assert!(store.fire("nightly", T0 + 60_000, &j).unwrap().is_some());
    assert_eq!(store.last_fire(&p, "nightly").unwrap(), Some(T0 + 60_000));
    // Schedules are per plugin and name.
    assert_eq!(store.last_fire(&p, "hourly").unwrap(), None);
    assert_eq!(
        store.last_fire(&plugin("fire-other"), "nightly").unwrap(),
        None
    );
    assert!(store.fire("hourly", T0, &j).unwrap().is_some());

    // Two hosts firing the same instant: one job.
    let at = T0 + 120_000;
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| store.fire("nightly", at, &j).unwrap());
        let b = s.spawn(|| store.fire("nightly", at, &j).unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.is_some() != b.is_some(), "{a:?} {b:?}");

    // A deduplicated fire is still taken.
    let k = keyed(&p, "send", "once");
    assert!(store.fire("poll", T0, &k).unwrap().is_some());
    assert_eq!(store.fire("poll", T0 + 1, &k).unwrap(), None);
    assert_eq!(store.last_fire(&p, "poll").unwrap(), Some(T0 + 1));
}

/// Counts go by plugin, kind and shown state, with the oldest `run_at`.
pub(crate) fn counts(store: &dyn JobStore) {
    let p = plugin("counts");
    let at = |run_at: i64| NewJob {
        run_at,
        ..job(&p, "a")
    };
    enqueue_one(store, job(&p, "b"));
    enqueue_one(store, job(&p, "b"));
    enqueue_one(store, job(&p, "b"));
    // b: one completed, one retryable (at T0 + 50), one running.
    run_once(store, &p, Next::Complete, T0);
    run_once(store, &p, Next::Retry { at: T0 + 50 }, T0);
    claim_at(store, &p, 1, T0);
    enqueue_one(store, at(T0 - 30));
    enqueue_one(store, at(T0 - 10));
    enqueue_one(store, at(T0 + 1_000));
    let got: BTreeSet<(String, JobState, u64, i64)> = store
        .counts(T0)
        .unwrap()
        .into_iter()
        .filter(|c| c.plugin == p)
        .map(|c| (c.kind, c.state, c.count, c.oldest_run_at))
        .collect();
    let want: BTreeSet<(String, JobState, u64, i64)> = [
        ("a", JobState::Available, 2, T0 - 30),
        ("a", JobState::Scheduled, 1, T0 + 1_000),
        ("b", JobState::Completed, 1, T0),
        ("b", JobState::Retryable, 1, T0 + 50),
        ("b", JobState::Running, 1, T0),
    ]
    .into_iter()
    .map(|(k, s, n, r)| (k.to_owned(), s, n, r))
    .collect();
    assert_eq!(got, want);
}

/// Pruning deletes finished jobs older than the cut-off, and beyond the newest `keep`; never
/// waiting or running ones. It counts every plugin's finished jobs: in a shared store, it
/// runs last.
pub(crate) fn prune(store: &dyn JobStore) {
    let p = plugin("prune");
    // Finished long before anything other checks finish.
    let early = |run_at: i64| NewJob {
        run_at,
        ..job(&p, "send")
    };
    let old = enqueue_one(store, early(0));
    run_once(store, &p, Next::Complete, 1_000);
    let cancelled = enqueue_one(store, early(0));
    store.cancel(cancelled, 1_100).unwrap().unwrap();
    let mid = enqueue_one(store, early(0));
    run_once(store, &p, Next::Discard, 2_000);
    let running = enqueue_one(store, early(0));
    claim_at(store, &p, 1, 2_000);
    let waiting = enqueue_one(store, early(5_000));
    assert_eq!(store.prune(1_500, u64::MAX).unwrap(), 2);
    assert!(store.get(old, 2_000).unwrap().is_none());
    assert!(store.get(cancelled, 2_000).unwrap().is_none());
    assert_eq!(get(store, mid, 2_000).1.len(), 1);
    assert_eq!(store.prune(1_500, u64::MAX).unwrap(), 0);

    // Finished after anything other checks finish: the newest of the store.
    let far = 4_000_000_000_000;
    let q = plugin("prune-new");
    let newest: Vec<i64> = (1..=3)
        .map(|i| {
            let id = enqueue_one(store, job(&q, "send"));
            run_once(store, &q, Next::Complete, far + i);
            id
        })
        .collect();
    let finished: u64 = store
        .counts(far)
        .unwrap()
        .iter()
        .filter(|c| {
            matches!(
                c.state,
                JobState::Completed | JobState::Discarded | JobState::Cancelled
            )
        })
        .map(|c| c.count)
        .sum();
    assert_eq!(store.prune(0, 2).unwrap(), finished - 2);
    assert!(store.get(newest[0], far).unwrap().is_none());
    assert!(store.get(mid, far).unwrap().is_none());
    assert_eq!(get(store, newest[1], far).1.len(), 1);
    assert_eq!(get(store, newest[2], far).0.state, JobState::Completed);
    assert_eq!(get(store, running, far).0.state, JobState::Running);
    assert_eq!(get(store, waiting, far).0.state, JobState::Available);
    assert_eq!(store.prune(i64::MAX, 0).unwrap(), 2);
    assert!(store.get(newest[2], far).unwrap().is_none());
    assert_eq!(get(store, waiting, far).0.state, JobState::Available);
}
