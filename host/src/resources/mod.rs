//! Resources a plugin may touch (tables, topics, buckets): what it declared, what the operator
//! allows instead ([`Overrides`]), the physical names backends see (`naming`), and the
//! repositories that enforce all of it (`tables`, `topics`, `buckets`).

pub(crate) mod buckets;
pub(crate) mod naming;
mod policy;
pub(crate) mod scope;
pub(crate) mod tables;
pub(crate) mod topics;

pub use policy::{EffectiveResources, Overrides};
pub use scope::DeniedTable;
