//! Commit gates: a lifecycle change asked for by someone who stops waiting never takes effect
//! afterwards.
//!
//! The admin API answers a request that outlives its timeout with `504 timeout`. Without a
//! gate, the load or reload behind it would go on and take effect seconds later, after the
//! client was told it failed. With one, the requester and the operation share a [`CommitGate`]:
//! - the operation commits (registers the new instance, swaps it in, starts an unload) only
//!   through [`commit`], which runs the change only while the gate is open and closes it as
//!   committed, in one step under the gate's lock;
//! - the requester, at its deadline, calls [`CommitGate::abandon`]: if nothing was committed
//!   yet, no change will ever be, and the operation rolls back what it prepared (a new instance
//!   is retired, the old one keeps running); if the change was already committed, `abandon`
//!   says so and the requester waits for the result and reports it (success, not 504).
//!
//! The gate of the running operation is found through the calling thread ([`PluginManager::gated`]
//! sets it for a closure), so the transitions need no extra parameter: a call without a gate
//! (embedders, the watcher, `plugin-host run`) always commits.
//!
//! [`PluginManager::gated`]: super::PluginManager::gated

use std::cell::RefCell;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Change, Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum GateState {
    /// Nothing committed, requester still waiting.
    #[default]
    Open,
    /// At least one change took effect; later changes of the same request may follow.
    Committed,
    /// The requester gave up: nothing may take effect any more.
    Abandoned,
}

/// Shared by a requester and the lifecycle operation it asked for. See the module docs.
#[derive(Debug, Default)]
pub struct CommitGate {
    state: Mutex<GateState>,
}

impl CommitGate {
    /// An open gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// The requester stops waiting. Returns `true` when no change took effect and none ever
    /// will; `false` when a change was already committed (wait for the operation's result).
    pub fn abandon(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match *state {
            GateState::Committed => false,
            GateState::Open | GateState::Abandoned => {
                *state = GateState::Abandoned;
                true
            }
        }
    }

    /// Whether the requester gave up.
    pub fn is_abandoned(&self) -> bool {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) == GateState::Abandoned
    }

    fn commit<T>(&self, change: impl FnOnce() -> T) -> Option<T> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if *state == GateState::Abandoned {
            return None;
        }
        // The change runs under the gate's lock: `abandon` sees it either not started or done.
        let out = change();
        *state = GateState::Committed;
        Some(out)
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<CommitGate>>> = const { RefCell::new(None) };
}

/// Runs `f` with `gate` as the calling thread's gate (restoring the previous one after).
pub(crate) fn with_gate<T>(gate: &Arc<CommitGate>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Arc<CommitGate>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let previous = CURRENT.with(|c| c.borrow_mut().replace(Arc::clone(gate)));
    let _restore = Restore(previous);
    f()
}

fn current() -> Option<Arc<CommitGate>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// The error of an operation whose requester gave up before it took effect.
pub(crate) fn abandoned(operation: Change) -> Error {
    Error::Abandoned { operation }
}

/// Fails early when the requester already gave up (before starting work it would roll back).
pub(crate) fn check(operation: Change) -> Result<()> {
    match current() {
        Some(gate) if gate.is_abandoned() => Err(abandoned(operation)),
        _ => Ok(()),
    }
}

/// Runs `change` (the step that makes an operation take effect) unless the calling thread's
/// requester gave up; without a gate, always runs it.
pub(crate) fn commit<T>(operation: Change, change: impl FnOnce() -> T) -> Result<T> {
    match current() {
        Some(gate) => gate.commit(change).ok_or_else(|| abandoned(operation)),
        None => Ok(change()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_gate_refuses_commits_and_committed_gate_refuses_abandon() {
        let gate = Arc::new(CommitGate::new());
        assert_eq!(with_gate(&gate, || commit(Change::Load, || 1)).unwrap(), 1);
        assert!(!gate.abandon(), "already committed");
        assert_eq!(
            with_gate(&gate, || commit(Change::Reload, || 2)).unwrap(),
            2
        );

        let gate = Arc::new(CommitGate::new());
        assert!(gate.abandon());
        let mut ran = false;
        let r = with_gate(&gate, || commit(Change::Load, || ran = true));
        assert_eq!(r.unwrap_err().code().as_str(), "timeout");
        assert!(!ran);
        assert!(with_gate(&gate, || check(Change::Load)).is_err());
        // Outside the gate's scope, no gate applies.
        assert!(check(Change::Load).is_ok());
        assert_eq!(commit(Change::Load, || 3).unwrap(), 3);
    }
}
