//! The queue on PostgreSQL: [`PgJobs`] keeps jobs, the execution log, paused kinds and
//! schedule fires in one host-only schema (production: `plugin_host` of the admin database,
//! which no plugin role may use: nothing is granted on it and `PUBLIC` loses its defaults).
//! Hosts sharing the database share the queue: claims lock rows with `FOR UPDATE SKIP LOCKED`,
//! every claim carries a fencing token from a sequence, and an enqueue sends `NOTIFY` on
//! `<schema>_jobs` so the other hosts' workers wake up.
//!
//! Every method is one statement or one transaction; every time comes from the caller (the
//! database clock is never read), except a job's `created_at`, which [`JobStore::enqueue`](crate::jobs::JobStore::enqueue)
//! takes from this host's clock. Callers are synchronous threads: like the tables backend,
//! this store owns a small tokio runtime and blocks only the calling thread.
//!
//! `sql` holds the schema and the statements, `rows` turns rows into records and jobs into
//! bound arrays, `listen` runs the `LISTEN` side, and `store` the store itself.

mod listen;
mod rows;
mod sql;
mod store;
#[cfg(test)]
mod tests;

pub(crate) use store::PgJobs;
