//! Group commit: callers that write to the job store at the same time share one transaction.
//!
//! Every enqueue must be durable before its `emit` returns, and a durable commit costs a disk
//! sync (PostgreSQL's WAL flush, SQLite's with `synchronous = FULL`): one sync per event would
//! cap the queue at the disk's sync rate per emitter. The ends of attempts are cheaper (no sync
//! on PostgreSQL) but still cost a statement and a round trip each. So the first caller to
//! arrive commits what is pending (its own items); callers that arrive while that commit runs
//! wait and are committed together, in one transaction, by the next of them. Each caller still
//! returns only once its own items are committed, with its own results (or the batch's error).

use std::sync::{Condvar, Mutex, PoisonError};

use crate::error::{Error, Result};

/// A caller's outcome: its items' results, or the message of the error that refused them.
type Outcome<O> = std::result::Result<Vec<O>, String>;

/// The message of a store error, as the caller will see it again.
fn message(e: &Error) -> String {
    match e {
        Error::BackendUnavailable { message, .. } => message.clone(),
        e => e.to_string(),
    }
}

/// Runs `commit` without letting a panic through (a panic would leave the group committing
/// forever).
fn guarded<T, O>(commit: &dyn Fn(&[T]) -> Result<Vec<O>>, items: &[T]) -> Outcome<O> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit(items))) {
        Ok(Ok(results)) if results.len() == items.len() => Ok(results),
        Ok(Ok(_)) => Err("the store answered for another number of items".into()),
        Ok(Err(e)) => Err(message(&e)),
        Err(_) => Err("the job store panicked".into()),
    }
}

/// Commits a batch (`sizes`: each caller's ticket and number of items, in order) in one
/// transaction; if that fails and the batch has several callers, each caller's items are
/// committed again on their own, so that one caller's bad item cannot fail the others.
fn commit<T, O>(
    run: &dyn Fn(&[T]) -> Result<Vec<O>>,
    all: Vec<T>,
    sizes: &[(u64, usize)],
) -> Vec<Outcome<O>> {
    match guarded(run, &all) {
        Ok(results) => {
            let mut rest = results.into_iter();
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
                    let mine: Vec<T> = rest.by_ref().take(*n).collect();
                    guarded(run, &mine)
                })
                .collect()
        }
    }
}

/// One caller's items and, once committed, their outcome.
struct Entry<T, O> {
    items: Vec<T>,
    outcome: Option<Outcome<O>>,
}

struct State<T, O> {
    /// Entries by ticket; an entry leaves when its caller takes its outcome.
    entries: std::collections::BTreeMap<u64, Entry<T, O>>,
    next_ticket: u64,
    /// Tickets below this were taken by a commit.
    taken_below: u64,
    /// A commit is running.
    committing: bool,
}

/// Batches concurrent writes of items `T` (answered with one `O` each) into shared
/// transactions.
pub(crate) struct GroupCommit<T, O> {
    state: Mutex<State<T, O>>,
    done: Condvar,
}

impl<T, O> Default for GroupCommit<T, O> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                entries: std::collections::BTreeMap::new(),
                next_ticket: 0,
                taken_below: 0,
                committing: false,
            }),
            done: Condvar::new(),
        }
    }
}

impl<T, O> std::fmt::Debug for GroupCommit<T, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl<T, O> GroupCommit<T, O> {
    /// Writes `items` with `run` (one transaction for a batch, answering one result per item,
    /// in order), in a transaction shared with the callers that wait at the same time. Every
    /// caller of one `GroupCommit` must pass an equivalent `run`: the leader of a batch runs
    /// its own for everyone. Returns when the items are committed.
    ///
    /// # Errors
    /// The store's error for the transaction that carried them (`backend_unavailable`).
    pub(crate) fn run(
        &self,
        items: Vec<T>,
        run: &dyn Fn(&[T]) -> Result<Vec<O>>,
    ) -> Result<Vec<O>> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.entries.insert(
            ticket,
            Entry {
                items,
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
            // Lead a commit of everything waiting (this caller's items included).
            st.committing = true;
            let from = st.taken_below;
            st.taken_below = st.next_ticket;
            let mut all = Vec::new();
            let batch: Vec<(u64, usize)> = st
                .entries
                .range_mut(from..)
                .filter(|(_, e)| e.outcome.is_none())
                .map(|(t, e)| {
                    let n = e.items.len();
                    all.append(&mut e.items);
                    (*t, n)
                })
                .collect();
            drop(st);
            let outcomes = commit(run, all, &batch);
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
    use crate::jobs::store::{JobStore, NewJob};

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
                        let ids = group.run(jobs, &|j| store.enqueue(j)).unwrap();
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
