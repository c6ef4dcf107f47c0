//! The in-process topic log (embedded default): one ordered log per topic, single partition,
//! retained in memory up to a bound (the oldest records go first; offsets stay absolute), and
//! consumer groups whose committed offsets live beside the logs. A consumer starts at its group's
//! committed offset, so what was delivered but not committed is delivered again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::{Message, Record, TopicBackend, TopicConsumer};
use crate::error::Result;
use crate::resources::naming;

/// Records kept per topic before the oldest are dropped.
const RETAIN: usize = 100_000;

#[derive(Debug, Default)]
struct LogState {
    /// Offset of `records[0]`.
    start: u64,
    records: VecDeque<(u64, Arc<Record>)>,
}

#[derive(Debug, Default)]
struct Log {
    state: Mutex<LogState>,
    grew: Condvar,
}

/// The in-process log.
#[derive(Debug)]
pub(crate) struct MemoryTopics {
    prefix: String,
    logs: Mutex<HashMap<String, Arc<Log>>>,
    /// Committed offsets by (group, topic): the next offset the group will read.
    committed: Arc<Mutex<HashMap<(String, String), u64>>>,
}

impl MemoryTopics {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            logs: Mutex::new(HashMap::new()),
            committed: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn log(&self, topic: &str) -> Arc<Log> {
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(logs.entry(topic.to_owned()).or_default())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl TopicBackend for MemoryTopics {
    fn physical(&self, plugin: &str, logical: &str) -> Result<String> {
        naming::kafka_topic(&self.prefix, plugin, logical)
    }

    fn group(&self, plugin: &str) -> String {
        format!("{}.{plugin}", self.prefix)
    }

    fn create(&self, topic: &str) -> Result<()> {
        self.log(topic);
        Ok(())
    }

    fn produce(&self, topic: &str, record: Record) -> Result<u64> {
        let log = self.log(topic);
        let mut state = log.state.lock().unwrap_or_else(PoisonError::into_inner);
        let offset = state.start + state.records.len() as u64;
        state.records.push_back((now_ms(), Arc::new(record)));
        if state.records.len() > RETAIN {
            state.records.pop_front();
            state.start += 1;
        }
        drop(state);
        log.grew.notify_all();
        Ok(offset)
    }

    fn consumer(&self, group: &str, topic: &str) -> Result<Box<dyn TopicConsumer>> {
        let key = (group.to_owned(), topic.to_owned());
        let position = self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .copied()
            .unwrap_or(0);
        Ok(Box::new(MemoryConsumer {
            log: self.log(topic),
            key,
            position,
            committed: Arc::clone(&self.committed),
        }))
    }

    fn check(&self) -> Result<()> {
        Ok(())
    }
}

struct MemoryConsumer {
    log: Arc<Log>,
    key: (String, String),
    /// Next offset to hand out.
    position: u64,
    committed: Arc<Mutex<HashMap<(String, String), u64>>>,
}

impl TopicConsumer for MemoryConsumer {
    fn poll(&mut self, timeout: Duration) -> Result<Option<Message>> {
        let deadline = Instant::now() + timeout;
        let mut state = self
            .log
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            // Records dropped by retention are gone: continue from the oldest kept.
            if self.position < state.start {
                self.position = state.start;
            }
            let index = (self.position - state.start) as usize;
            if let Some((timestamp_ms, record)) = state.records.get(index) {
                let message = Message {
                    partition: 0,
                    offset: self.position,
                    timestamp_ms: *timestamp_ms,
                    record: Arc::clone(record),
                };
                self.position += 1;
                return Ok(Some(message));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            state = self
                .log
                .grew
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn commit(&mut self, message: &Message) -> Result<()> {
        let mut committed = self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let next = committed.entry(self.key.clone()).or_insert(0);
        *next = (*next).max(message.offset + 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_resume_from_their_committed_offset() {
        let t = MemoryTopics::new("ph");
        for i in 0..3 {
            let offset = t
                .produce(
                    "ph.p.x",
                    Record {
                        payload: vec![i],
                        ..Record::default()
                    },
                )
                .unwrap();
            assert_eq!(offset, u64::from(i));
        }
        let mut a = t.consumer("ph.a", "ph.p.x").unwrap();
        let m0 = a.poll(Duration::from_millis(10)).unwrap().unwrap();
        a.commit(&m0).unwrap();
        let m1 = a.poll(Duration::from_millis(10)).unwrap().unwrap();
        assert_eq!(m1.offset, 1);
        // Not committed: a new consumer of the same group gets offset 1 again.
        let mut again = t.consumer("ph.a", "ph.p.x").unwrap();
        assert_eq!(
            again
                .poll(Duration::from_millis(10))
                .unwrap()
                .unwrap()
                .offset,
            1
        );
        // Another group starts at the beginning.
        let mut b = t.consumer("ph.b", "ph.p.x").unwrap();
        assert_eq!(
            b.poll(Duration::from_millis(10)).unwrap().unwrap().offset,
            0
        );
        // Nothing new: poll times out.
        let mut c = t.consumer("ph.a", "ph.p.x").unwrap();
        for _ in 0..2 {
            c.poll(Duration::from_millis(10)).unwrap();
        }
        assert!(c.poll(Duration::from_millis(10)).unwrap().is_none());
    }
}
