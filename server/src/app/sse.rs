//! The wire side of an event stream (see `stream.rs`): the Server-Sent Events framing
//! (`id`, `event`, `data` on one line of JSON), keep-alive comments in silences, and the final
//! `end` or `overflow` frame after the queued events. Pure framing over a queue: it knows
//! nothing of the bus or the plugins.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use tokio::sync::{mpsc, watch};

/// Why a stream ended; the data of its final event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The client read too slowly and its queue filled up: events were lost.
    Overflow,
    /// The plugin was unloaded.
    Unloaded,
    /// The plugin was replaced by a new instance.
    Reloaded,
    /// The plugin was disabled.
    Disabled,
    /// The plugin's instance failed (a hook failed or hung).
    Failed,
    /// The server is shutting down.
    Shutdown,
}

impl End {
    /// The reason as the final event's data says it.
    fn reason(self) -> &'static str {
        match self {
            Self::Overflow => "overflow",
            Self::Unloaded => "unloaded",
            Self::Reloaded => "reloaded",
            Self::Disabled => "disabled",
            Self::Failed => "failed",
            Self::Shutdown => "shutdown",
        }
    }

    /// The final frame: `event: overflow` for an overflow, `event: end` otherwise.
    pub(crate) fn frame(self) -> Bytes {
        let event = if self == Self::Overflow {
            "overflow"
        } else {
            "end"
        };
        Bytes::from(format!(
            "event: {event}\ndata: {{\"reason\":\"{}\"}}\n\n",
            self.reason()
        ))
    }
}

/// One event on its way to the client.
#[derive(Debug)]
pub(crate) struct Item {
    /// The event's name.
    pub(crate) name: Arc<str>,
    /// Its payload.
    pub(crate) payload: Arc<[u8]>,
    /// Whether the payload is raw bytes rather than JSON.
    pub(crate) raw: bool,
}

/// The body of a stream: the events of `rx` until `end` is signalled, then the final frame. `owned`
/// is dropped with the body (when the client disconnects or after the final frame).
pub(crate) fn body<G: std::fmt::Debug + Send + 'static>(
    rx: mpsc::Receiver<Item>,
    end: watch::Receiver<Option<End>>,
    keep_alive: Duration,
    owned: G,
) -> Body {
    let pump = Pump {
        rx,
        end,
        ending: None,
        done: false,
        seq: 0,
        keep_alive,
        _owned: owned,
    };
    Body::from_stream(futures_util::stream::unfold(pump, Pump::next))
}

/// The body of one stream: events in order, keep-alive comments in silences, then the final
/// frame. Owns `G` (the stream's guard), dropped with the body.
#[derive(Debug)]
struct Pump<G> {
    rx: mpsc::Receiver<Item>,
    end: watch::Receiver<Option<End>>,
    /// Set once the end is signalled: the queue is drained, then the final frame is sent.
    ending: Option<End>,
    /// The final frame was sent.
    done: bool,
    seq: u64,
    keep_alive: Duration,
    _owned: G,
}

/// One chunk of the body.
type Chunk = Result<Bytes, std::convert::Infallible>;

impl<G> Pump<G> {
    async fn next(mut self) -> Option<(Chunk, Self)> {
        if self.done {
            return None;
        }
        if self.ending.is_none() {
            let waited = tokio::time::timeout(self.keep_alive, async {
                tokio::select! {
                    // Events first: one queued before the end signal is sent before the end.
                    biased;
                    item = self.rx.recv() => item,
                    _ = self.end.wait_for(Option::is_some) => None,
                }
            })
            .await;
            match waited {
                Err(_) => return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), self)),
                Ok(Some(item)) => {
                    let frame = self.frame(&item);
                    return Some((Ok(frame), self));
                }
                // The end was signalled (or every sender is gone, which cannot happen while the
                // guard holds the subscriptions).
                Ok(None) => self.ending = Some((*self.end.borrow()).unwrap_or(End::Shutdown)),
            }
        }
        // Ending: what is still queued, then the final frame.
        if let Ok(item) = self.rx.try_recv() {
            let frame = self.frame(&item);
            return Some((Ok(frame), self));
        }
        self.done = true;
        let reason = self.ending.unwrap_or(End::Shutdown);
        Some((Ok(reason.frame()), self))
    }

    fn frame(&mut self, item: &Item) -> Bytes {
        self.seq += 1;
        Bytes::from(format!(
            "id: {}\nevent: {}\ndata: {}\n\n",
            self.seq,
            item.name,
            data(&item.payload, item.raw)
        ))
    }
}

/// The `data:` line of an event: its JSON payload on one line (re-encoded if it spans lines);
/// a raw payload, or one that is not JSON, as a JSON string (UTF-8, invalid bytes replaced).
fn data(payload: &[u8], raw: bool) -> String {
    let text = String::from_utf8_lossy(payload);
    if !raw && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
        return if text.contains(['\n', '\r']) {
            v.to_string()
        } else {
            text.into_owned()
        };
    }
    serde_json::Value::String(text.into_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_one_line_of_json() {
        assert_eq!(data(br#"{"a":1}"#, false), r#"{"a":1}"#);
        assert_eq!(data(b"{\n  \"a\": 1\n}", false), r#"{"a":1}"#);
        assert_eq!(data(b"line\nbreak", true), r#""line\nbreak""#);
        assert_eq!(data(b"not json", false), r#""not json""#);
        assert_eq!(
            End::Overflow.frame(),
            "event: overflow\ndata: {\"reason\":\"overflow\"}\n\n"
        );
        assert_eq!(
            End::Reloaded.frame(),
            "event: end\ndata: {\"reason\":\"reloaded\"}\n\n"
        );
    }
}
