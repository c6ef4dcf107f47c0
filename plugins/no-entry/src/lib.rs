//! Test library: a valid `cdylib` with no plugin entry point (it never calls
//! `export_plugin!`). The host must refuse it as a library without the entry symbol.
#![forbid(unsafe_code)]

/// A public function that is not a plugin entry point.
pub fn not_a_plugin() -> u32 {
    7
}
