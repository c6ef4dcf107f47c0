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

/// One emitter's jobs and, once committed, their outcome.
struct Entry {
    jobs: Vec<NewJob>,
    outcome: Option<std::result::Result<Vec<Option<i64>>, String>>,
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
            let result = store.enqueue(&all);
            st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let mut offset = 0;
            for (t, n) in batch {
                let outcome = match &result {
                    Ok(ids) => ids
                        .get(offset..offset + n)
                        .map(<[Option<i64>]>::to_vec)
                        .ok_or_else(|| {
                            "the store answered for fewer jobs than it was given".into()
                        }),
                    Err(Error::BackendUnavailable { message, .. }) => Err(message.clone()),
                    Err(e) => Err(e.to_string()),
                };
                offset += n;
                if let Some(e) = st.entries.get_mut(&t) {
                    e.outcome = Some(outcome);
                }
            }
            st.committing = false;
            self.done.notify_all();
        }
    }
}
