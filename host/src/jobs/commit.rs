//! Group commit of enqueues: emitters that enqueue at the same time share one transaction.
//!
//! Every enqueue must be durable before its `emit` returns, and a durable commit costs a disk
//! sync (PostgreSQL's WAL flush, SQLite's with `synchronous = FULL`): one sync per event would
//! cap the queue at the disk's sync rate per emitter. Instead the first emitter to arrive
//! commits what is pending (its own jobs); emitters that arrive while that commit runs wait and
//! are committed together, in one transaction, by the next of them. Each emitter still returns
//! only once its own jobs are committed, with their own ids (or the batch's error).

use std::sync::{Condvar, Mutex, PoisonError};

use super::store::{JobStore, NewJob};
use crate::error::{Error, Result};

/// An emitter's outcome: its jobs' ids, or the message of the error that refused them.
type Outcome = std::result::Result<Vec<Option<i64>>, String>;

/// The message of a store error, as the emitter will see it again.
fn message(e: &Error) -> String {
    match e {
        Error::BackendUnavailable { message, .. } => message.clone(),
        e => e.to_string(),
    }
}

/// Runs `store.enqueue` without letting a panic through (a panic would leave the group
/// committing forever).
fn guarded(store: &dyn JobStore, jobs: &[NewJob]) -> Outcome {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.enqueue(jobs))) {
        Ok(Ok(ids)) if ids.len() == jobs.len() => Ok(ids),
        Ok(Ok(_)) => Err("the store answered for another number of jobs".into()),
        Ok(Err(e)) => Err(message(&e)),
        Err(_) => Err("the job store panicked".into()),
    }
}

/// Commits a batch (`sizes`: each emitter's ticket and number of jobs, in order) in one
/// transaction; if that fails and the batch has several emitters, each emitter's jobs are
/// committed again on their own, so that one emitter's bad job cannot fail the others' emits.
fn commit(store: &dyn JobStore, all: Vec<NewJob>, sizes: &[(u64, usize)]) -> Vec<Outcome> {
    match guarded(store, &all) {
        Ok(ids) => {
            let mut rest = ids.into_iter();
            sizes
                .iter()
                .map(|(_, n)| Ok(rest.by_ref().take(*n).collect()))
                .collect()
        }
        Err(e) if sizes.len() <= 1 => vec![Err(e)],
        Err(_) => {
            let mut rest = all.into_iter();
            sizes
                .iter()
                .map(|(_, n)| {
                    let mine: Vec<NewJob> = rest.by_ref().take(*n).collect();
                    guarded(store, &mine)
                })
                .collect()
        }
    }
}

/// One emitter's jobs and, once committed, their outcome.
struct Entry {
    jobs: Vec<NewJob>,
    outcome: Option<Outcome>,
}

#[derive(Default)]
struct State {
    /// Entries by ticket; an entry leaves when its emitter takes its outcome.
    entries: std::collections::BTreeMap<u64, Entry>,
    next_ticket: u64,
    /// Tickets below this were taken by a commit.
    taken_below: u64,
    /// A commit is running.
    committing: bool,
}

/// Batches concurrent enqueues into shared transactions.
#[derive(Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    done: Condvar,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Enqueues `jobs` through `store`, in a transaction shared with the enqueues that wait at
    /// the same time. Returns when they are committed.
    ///
    /// # Errors
    /// The store's error for the transaction that carried them (`backend_unavailable`).
    pub(crate) fn enqueue(
        &self,
        store: &dyn JobStore,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<Option<i64>>> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.entries.insert(
            ticket,
            Entry {
                jobs,
                outcome: None,
            },
        );
        loop {
            if let Some(outcome) = st.entries.get_mut(&ticket).and_then(|e| e.outcome.take()) {
                st.entries.remove(&ticket);
                return outcome.map_err(|message| Error::BackendUnavailable {
                    kind: crate::BackendKind::Tables,
                    message,
                });
            }
            if st.committing {
                st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Lead a commit of everything waiting (this emitter's jobs included).
            st.committing = true;
            let from = st.taken_below;
            st.taken_below = st.next_ticket;
            let mut all = Vec::new();
            let batch: Vec<(u64, usize)> = st
                .entries
                .range_mut(from..)
                .filter(|(_, e)| e.outcome.is_none())
                .map(|(t, e)| {
                    let n = e.jobs.len();
                    all.append(&mut e.jobs);
                    (*t, n)
                })
                .collect();
            drop(st);
            let outcomes = commit(store, all, &batch);
            st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            for ((t, _), outcome) in batch.into_iter().zip(outcomes) {
                if let Some(e) = st.entries.get_mut(&t) {
                    e.outcome = Some(outcome);
                }
            }
            st.committing = false;
            self.done.notify_all();
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::jobs::sqlite::SqliteJobs;

    #[test]
    fn concurrent_emitters_each_get_their_own_jobs_back() {
        let dir = std::env::temp_dir().join(format!("plugin-host-commit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Arc::new(SqliteJobs::open(&dir.join("jobs.db"), false).unwrap());
        let group = Arc::new(GroupCommit::default());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (store, group) = (Arc::clone(&store), Arc::clone(&group));
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let input = format!("{{\"t\":{t},\"i\":{i}}}");
                        let jobs = vec![NewJob {
                            plugin: "p".into(),
                            kind: "k".into(),
                            input: input.clone(),
                            priority: 0,
                            max_attempts: 1,
                            run_at: 0,
                            // Every emitter's jobs share a key with no other emitter's.
                            dedupe_key: Some(format!("{t}-{}", i % 2)),
                            source: "api".into(),
                            event_id: None,
                        }];
                        let ids = group.enqueue(store.as_ref(), jobs).unwrap();
                        assert_eq!(ids.len(), 1);
                        match ids[0] {
                            // The id answered is the job this emitter enqueued.
                            Some(id) => {
                                let (job, _) = store.get(id, 0).unwrap().unwrap();
                                assert_eq!(job.input, input);
                            }
                            // Deduplicated: the key's first job (i = 0 or 1) waits.
                            None => assert!(i >= 2),
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let all = store
            .list(
                &crate::jobs::JobFilter {
                    limit: 1000,
                    ..Default::default()
                },
                0,
            )
            .unwrap();
        // Two keys per emitter, each held by one waiting job.
        assert_eq!(all.len(), 16);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
