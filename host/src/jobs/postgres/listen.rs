//! The `LISTEN` side of the queue: wakes this host's workers when another host enqueues.
//! Runs as a task on the store's runtime, so it ends when the store is dropped.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};

/// Listens on `channel` until the runtime stops, calling `wake` on each notification but
/// those whose payload is `me` (this store's own enqueues: its host woke its workers already),
/// and once after each (re)connection, since what was enqueued while no listener ran would
/// otherwise go unnoticed.
pub(super) async fn listen(
    pool: PgPool,
    channel: String,
    me: String,
    wake: Arc<dyn Fn() + Send + Sync>,
) {
    const FIRST: Duration = Duration::from_millis(100);
    let mut backoff = FIRST;
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(&channel).await {
                Ok(()) => {
                    backoff = FIRST;
                    wake();
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(n)) if n.payload() == me => {}
                            Ok(Some(_)) => wake(),
                            Ok(None) => {
                                tracing::warn!(target: "jobs", %channel, "job queue listener lost its connection; reconnecting");
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(target: "jobs", %channel, error = %e, "job queue listener failed; reconnecting");
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(target: "jobs", %channel, error = %e, "job queue listener cannot listen; retrying");
                }
            },
            Err(e) => {
                tracing::warn!(target: "jobs", %channel, error = %e, "job queue listener cannot connect; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
