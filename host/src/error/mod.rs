//! Everything the host library can fail with, and the stable machine-readable codes of those
//! failures (`docs/error-codes.md`, generated from the table in `codes.rs`). Each code is defined
//! once, with its HTTP status as a plain number: this module knows no HTTP types; the admin API
//! maps the number to its status.

mod codes;
mod examples;
mod kinds;
mod table;
mod variants;

pub use codes::ErrorCode;
pub use kinds::{BackendKind, Change, Operation, ResultLimit};
pub use variants::{Error, Result};
