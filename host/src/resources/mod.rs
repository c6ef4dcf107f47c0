//! Resources a plugin may touch (tables, topics, buckets): what it declared, what the operator
//! allows instead ([`Overrides`]), and the effective allowed set.

mod policy;

pub use policy::{EffectiveResources, Overrides};
