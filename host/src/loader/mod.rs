//! From a file to a running library: read and validate a plugin file *without running it*,
//! write its unique shadow copy, and (in [`ffi`], the only unsafe module of the host) open it.
//!
//! Order of checks, each a typed error (see `docs/trust-model.md`):
//! the path is sound and names a regular file of at most the configured size, read without
//! blocking ([`file`]) → file exists → it is a shared library of this host's architecture → it exports the declaration
//! and the entry symbol → magic → ABI major equal, API minor not newer → panic strategy unwind →
//! manifest JSON valid (name rule, semver). Only then does a [`TrustedPath`] exist, and only a
//! `TrustedPath` can be opened. The bytes validated are the bytes written to the shadow copy, so
//! a file replaced between check and open cannot slip through.

#[allow(
    unsafe_code,
    reason = "dlopen/dlsym and the plugin ABI; the only unsafe module of the host"
)]
mod ffi;
mod file;
mod shadow;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use object::{Object, ObjectSection};
use plugin_api::ffi::{
    ABI_MAJOR, API_MINOR, DECLARATION_SYMBOL, DeclarationHeader, ENTRY_SYMBOL, FLAG_CONCURRENT,
    HostVTable, MAGIC, PANIC_UNWIND, PLUGIN_VTABLE_MIN_SIZE,
};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::manifest::PluginManifest;

pub(crate) use ffi::{
    CallError, Hook, HostContext, HostServices, Instance, InstantiateError, Library, is_mapped,
};
pub use file::DEFAULT_MAX_PLUGIN_BYTES;
pub use file::check_path;
#[cfg(feature = "__private")]
pub(crate) use file::read_pause;
pub(crate) use file::{path_error, read_plugin_file};
pub(crate) use shadow::{ShadowLock, claim_shadow_dir};

/// Size of [`DeclarationHeader`] in the file.
const HEADER_SIZE: usize = size_of::<DeclarationHeader>();

/// What the host learned about a plugin file without running any of it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Inspection {
    /// The file inspected.
    pub path: PathBuf,
    /// Its validated manifest.
    pub manifest: PluginManifest,
    /// ABI major version it was built for.
    pub abi_major: u32,
    /// API minor version it was built for.
    pub api_minor: u32,
    /// Whether it was exported as `concurrent`: its shared functions may run on several threads
    /// at once (header flag, API minor 2).
    pub concurrent: bool,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// 64-bit content hash of the file, hex (equal files hash equal). Computed by [`inspect`]
    /// only: loading copies the file but does not hash it.
    pub content_hash: String,
}

/// A validated plugin file, with the exact bytes that were validated.
#[derive(Debug)]
pub(crate) struct Candidate {
    pub(crate) inspection: Inspection,
    pub(crate) header: DeclarationHeader,
    bytes: Vec<u8>,
}

impl Candidate {
    /// Keeps what was learned and frees the file's bytes (a directory plan holds many
    /// candidates at once); [`Candidate::reread`] gets them back before loading.
    pub(crate) fn release_bytes(&mut self) {
        self.bytes = Vec::new();
    }

    /// Reads the file again and validates it again. The bytes loaded are always the bytes
    /// validated; if the file now declares another plugin or other dependencies, that is an
    /// error rather than a silent change of plan.
    pub(crate) fn reread(self, max_bytes: u64) -> Result<Self> {
        if !self.bytes.is_empty() {
            return Ok(self);
        }
        let fresh = Self::read(&self.inspection.path, max_bytes)?;
        if fresh.inspection.manifest != self.inspection.manifest {
            return Err(Error::InvalidManifest {
                path: self.inspection.path.clone(),
                reason: "the file changed while the folder was being loaded".into(),
            });
        }
        Ok(fresh)
    }
}

/// A shadow copy the loader wrote after validating its bytes: the only kind of path that
/// [`Library::open`] accepts, because opening a library runs its code.
#[derive(Debug)]
pub(crate) struct TrustedPath(PathBuf);

impl TrustedPath {
    pub(crate) fn as_path(&self) -> &Path {
        &self.0
    }
}

/// Reads and validates a plugin file without running any of its code, with the default size
/// limit ([`DEFAULT_MAX_PLUGIN_BYTES`]).
///
/// # Errors
/// `invalid_path` (NUL byte, over-long path, not a regular file, a pseudo-file),
/// `file_too_large`, `file_not_found`, `invalid_plugin` (not a library, missing symbol, bad
/// magic, bad manifest), `incompatible_abi`, `unsupported_panic_strategy`, `invalid_name`.
pub fn inspect(path: &Path) -> Result<Inspection> {
    inspect_with_limit(path, DEFAULT_MAX_PLUGIN_BYTES)
}

/// [`inspect`] with a limit on the file's size, in bytes.
///
/// # Errors
/// As [`inspect`].
pub fn inspect_with_limit(path: &Path, max_bytes: u64) -> Result<Inspection> {
    let candidate = Candidate::read(path, max_bytes)?;
    let mut inspection = candidate.inspection;
    inspection.content_hash = format!("{:016x}", content_hash(&candidate.bytes));
    Ok(inspection)
}

impl Candidate {
    /// Reads and validates a plugin file. A relative path is made absolute against the
    /// process's working directory first, so the path kept (and persisted) names the same file
    /// whatever directory the host later runs from.
    pub(crate) fn read(path: &Path, max_bytes: u64) -> Result<Self> {
        check_path(path)?;
        let path = std::path::absolute(path).map_err(|e| path_error(path, e))?;
        let bytes = read_plugin_file(&path, max_bytes)?;
        Self::from_bytes(&path, bytes)
    }

    pub(crate) fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let (header, manifest_json) = read_declaration(path, &bytes)?;
        check_header(path, &header)?;
        let manifest = PluginManifest::parse(path, &manifest_json)?;
        let inspection = Inspection {
            path: path.to_owned(),
            manifest,
            abi_major: header.abi_major,
            api_minor: header.api_minor,
            concurrent: header.reserved & FLAG_CONCURRENT != 0,
            file_size: bytes.len() as u64,
            content_hash: String::new(),
        };
        Ok(Self {
            inspection,
            header,
            bytes,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.inspection.manifest.name
    }

    /// Writes the validated bytes to a fresh, unique shadow path in `dir`.
    pub(crate) fn write_shadow(&self, dir: &Path) -> Result<TrustedPath> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let file = format!(
            "{}{}-{}-{n}{}",
            std::env::consts::DLL_PREFIX,
            self.name(),
            std::process::id(),
            std::env::consts::DLL_SUFFIX
        );
        let path = dir.join(file);
        std::fs::write(&path, &self.bytes).map_err(|e| Error::io(&path, e))?;
        Ok(TrustedPath(path))
    }
}

fn not_a_library(path: &Path, reason: impl Into<String>) -> Error {
    Error::NotALibrary {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Finds the declaration symbol in the file and returns its header and manifest bytes.
fn read_declaration(path: &Path, bytes: &[u8]) -> Result<(DeclarationHeader, Vec<u8>)> {
    let file = object::File::parse(bytes)
        .map_err(|e| not_a_library(path, format!("not an object file ({e})")))?;
    if file.kind() != object::ObjectKind::Dynamic {
        return Err(not_a_library(
            path,
            format!("a {:?} object, not a shared library", file.kind()),
        ));
    }
    let host_arch = host_architecture();
    if host_arch != object::Architecture::Unknown && file.architecture() != host_arch {
        return Err(not_a_library(
            path,
            format!(
                "built for {:?}, this host runs on {host_arch:?}",
                file.architecture()
            ),
        ));
    }
    let exports = file
        .exports()
        .map_err(|e| not_a_library(path, format!("unreadable export table ({e})")))?;
    let find = |symbol: &str| {
        exports.iter().find(|e| {
            let name = e.name();
            name == symbol.as_bytes()
                || (name.first() == Some(&b'_') && &name[1..] == symbol.as_bytes())
        })
    };
    let declaration = find(DECLARATION_SYMBOL).ok_or(Error::MissingSymbol {
        path: path.to_owned(),
        symbol: DECLARATION_SYMBOL,
    })?;
    if find(ENTRY_SYMBOL).is_none() {
        return Err(Error::MissingSymbol {
            path: path.to_owned(),
            symbol: ENTRY_SYMBOL,
        });
    }
    let address = declaration.address();
    let read_at = |address: u64, len: u64| -> Option<&[u8]> {
        file.sections()
            .find_map(|s| s.data_range(address, len).ok().flatten())
    };
    let header_bytes = read_at(address, HEADER_SIZE as u64).ok_or_else(|| {
        not_a_library(
            path,
            "the declaration symbol points outside the file's data",
        )
    })?;
    let header = parse_header(header_bytes);
    if header.magic != MAGIC {
        return Err(Error::BadMagic {
            path: path.to_owned(),
            found: String::from_utf8_lossy(&header.magic).into_owned(),
            expected: String::from_utf8_lossy(&MAGIC).into_owned(),
        });
    }
    let manifest = read_at(
        address + u64::from(header.header_size),
        u64::from(header.manifest_len),
    )
    .ok_or_else(|| Error::InvalidManifest {
        path: path.to_owned(),
        reason: format!(
            "manifest of {} bytes runs past the declaration",
            header.manifest_len
        ),
    })?;
    Ok((header, manifest.to_vec()))
}

fn parse_header(b: &[u8]) -> DeclarationHeader {
    let word = |i: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&b[8 + 4 * i..12 + 4 * i]);
        u32::from_ne_bytes(w)
    };
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&b[..8]);
    DeclarationHeader {
        magic,
        abi_major: word(0),
        api_minor: word(1),
        header_size: word(2),
        panic_strategy: word(3),
        plugin_vtable_size: word(4),
        host_vtable_size: word(5),
        manifest_len: word(6),
        reserved: word(7),
    }
}

/// The ABI window this host accepts, as shown in errors.
pub fn accepted_abi() -> String {
    format!("ABI {ABI_MAJOR}.0 to {ABI_MAJOR}.{API_MINOR}")
}

fn check_header(path: &Path, h: &DeclarationHeader) -> Result<()> {
    if h.abi_major != ABI_MAJOR || h.api_minor > API_MINOR {
        return Err(Error::IncompatibleAbi {
            path: path.to_owned(),
            found: format!("{}.{}", h.abi_major, h.api_minor),
            accepted: accepted_abi(),
        });
    }
    // Same ABI major: the header size agrees, the plugin's table has at least the fields of
    // minor 0 (later minors append, docs/abi.md), the host table it expects is no larger than
    // this host's, and no unknown flag is set; anything else means a corrupt or forged file.
    if h.header_size as usize != HEADER_SIZE
        || (h.plugin_vtable_size as usize) < PLUGIN_VTABLE_MIN_SIZE
        || (h.host_vtable_size as usize) > size_of::<HostVTable>()
        || h.reserved & !FLAG_CONCURRENT != 0
    {
        return Err(Error::IncompatibleAbi {
            path: path.to_owned(),
            found: format!(
                "{}.{} with layout sizes {}/{}/{}, flags {:#x}",
                h.abi_major,
                h.api_minor,
                h.header_size,
                h.plugin_vtable_size,
                h.host_vtable_size,
                h.reserved
            ),
            accepted: format!(
                "{} with layout sizes {HEADER_SIZE}/at least {PLUGIN_VTABLE_MIN_SIZE}/at most {}, flags {FLAG_CONCURRENT:#x}",
                accepted_abi(),
                size_of::<HostVTable>()
            ),
        });
    }
    if h.panic_strategy != PANIC_UNWIND {
        return Err(Error::PanicAbort {
            path: path.to_owned(),
        });
    }
    Ok(())
}

fn host_architecture() -> object::Architecture {
    use object::Architecture as A;
    match std::env::consts::ARCH {
        "x86_64" => A::X86_64,
        "aarch64" => A::Aarch64,
        "x86" => A::I386,
        "arm" => A::Arm,
        "riscv64" => A::Riscv64,
        _ => A::Unknown,
    }
}

/// A fast 64-bit content fingerprint, 8 bytes per step (multiply-rotate mixing). Not a security
/// hash: it only tells an identical rebuild from a changed file; the shadow copy, not the hash, is
/// what protects the loaded code. About 10x faster than byte-wise FNV on library-sized inputs.
pub(crate) fn content_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h: u64 = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
    }
    for &b in chunks.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(K).rotate_left(29);
    }
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_file_is_not_a_library() {
        let e = Candidate::from_bytes(Path::new("x.so"), b"hello, I am text".to_vec()).unwrap_err();
        assert!(matches!(e, Error::NotALibrary { .. }), "{e}");
    }

    #[test]
    fn host_executable_is_not_a_shared_library_or_has_no_symbol() {
        let exe = std::env::current_exe().unwrap();
        let e = Candidate::read(&exe, DEFAULT_MAX_PLUGIN_BYTES).unwrap_err();
        // Test executables are position-independent (ET_DYN) on most distributions, so the
        // refusal is either "not a shared library" or "no declaration symbol".
        assert!(
            matches!(e, Error::NotALibrary { .. } | Error::MissingSymbol { .. }),
            "{e}"
        );
    }

    #[test]
    fn header_checks() {
        let good = DeclarationHeader {
            magic: MAGIC,
            abi_major: ABI_MAJOR,
            api_minor: API_MINOR,
            header_size: HEADER_SIZE as u32,
            panic_strategy: PANIC_UNWIND,
            plugin_vtable_size: size_of::<plugin_api::ffi::PluginVTable>() as u32,
            host_vtable_size: size_of::<HostVTable>() as u32,
            manifest_len: 0,
            reserved: 0,
        };
        let p = Path::new("p.so");
        check_header(p, &good).unwrap();
        let code = |h: DeclarationHeader| check_header(p, &h).unwrap_err().code().as_str();
        assert_eq!(
            code(DeclarationHeader {
                abi_major: ABI_MAJOR + 1,
                ..good
            }),
            "incompatible_abi"
        );
        assert_eq!(
            code(DeclarationHeader {
                api_minor: API_MINOR + 1,
                ..good
            }),
            "incompatible_abi"
        );
        assert_eq!(
            code(DeclarationHeader {
                panic_strategy: 1,
                ..good
            }),
            "unsupported_panic_strategy"
        );
        assert_eq!(
            code(DeclarationHeader {
                header_size: 12,
                ..good
            }),
            "incompatible_abi"
        );
    }

    #[test]
    fn content_hash_tells_files_apart() {
        assert_eq!(content_hash(b"same bytes"), content_hash(b"same bytes"));
        assert_ne!(content_hash(b"a"), content_hash(b"b"));
        assert_ne!(content_hash(b""), content_hash(b"\0"));
        let mut big = vec![7u8; 4096];
        let h = content_hash(&big);
        big[2049] ^= 1;
        assert_ne!(h, content_hash(&big));
    }
}
