//! `export_plugin!`: the only way a plugin exports symbols.

/// Exports a [`Plugin`](crate::Plugin) type from a `cdylib` crate.
///
/// Writes the two symbols the host looks for: the declaration (versions, panic strategy, flags
/// and the manifest encoded as JSON at compile time) and the entry function returning the glue's
/// function table. The plugin crate itself needs no `unsafe` and may `#![forbid(unsafe_code)]`.
///
/// `export_plugin!(Type)` exports an exclusive plugin (one call at a time, on its own thread).
/// `export_plugin!(Type, concurrent)` exports a concurrent one: its `&self` functions run several
/// at once on a pool of host threads, so `Type` must be `Sync` (a compile error otherwise).
///
/// ```ignore
/// struct Hello;
/// impl plugin_api::Plugin for Hello {
///     const MANIFEST: plugin_api::Manifest = plugin_api::Manifest::new("hello", "1.0.0");
///     fn new(_: &plugin_api::Context) -> plugin_api::Result<Self> {
///         Ok(Hello)
///     }
/// }
/// plugin_api::export_plugin!(Hello);
/// ```
///
/// A type that is not `Sync` cannot be exported as `concurrent`:
///
/// ```compile_fail
/// struct Counter(std::cell::Cell<u64>);
/// impl plugin_api::Plugin for Counter {
///     const MANIFEST: plugin_api::Manifest = plugin_api::Manifest::new("counter", "1.0.0");
///     fn new(_: &plugin_api::Context) -> plugin_api::Result<Self> {
///         Ok(Counter(std::cell::Cell::new(0)))
///     }
/// }
/// plugin_api::export_plugin!(Counter, concurrent);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        $crate::export_plugin!(@flags $plugin, 0);
    };
    ($plugin:ty, concurrent) => {
        const _: () = $crate::__private::assert_sync::<$plugin>();
        $crate::export_plugin!(@flags $plugin, $crate::__private::FLAG_CONCURRENT);
    };
    (@flags $plugin:ty, $flags:expr) => {
        const _: () = {
            const __MANIFEST: $crate::Manifest = <$plugin as $crate::Plugin>::MANIFEST;
            const __LEN: usize = __MANIFEST.encoded_len();

            /// The plugin's declaration, read by the host before the library is opened.
            #[unsafe(no_mangle)]
            pub static PLUGIN_HOST_DECLARATION: $crate::__private::Declaration<__LEN> =
                $crate::__private::Declaration::new(__MANIFEST.encode::<__LEN>(), $flags);

            /// Returns the plugin's function table, or null for a host of another ABI major.
            #[unsafe(no_mangle)]
            pub extern "C" fn plugin_host_entry(
                host_abi_major: u32,
            ) -> *const $crate::__private::PluginVTable {
                $crate::__private::Glue::<$plugin>::entry(host_abi_major)
            }
        };
    };
}
