//! Finds plugin files in a folder and loads them with every check.
//!
//! A file travels through these steps; the first that fails refuses it with
//! a [`LoadError`] naming the file and the cause, and the other files still
//! load:
//!
//! 1. read the whole file once, and with an allow-list hash it (sha256)
//!    and refuse a hash not on the list;
//! 2. [`crate::preflight::check`] the bytes: a complete shared library for
//!    this machine;
//! 3. write the same bytes to a private copy with a unique name in the state
//!    folder, so the operator may overwrite or delete the dropped file at any
//!    time, and so two versions of one plugin get two independent images
//!    (the loader hands back the cached image for a path it has seen);
//! 4. open the copy and check the interface version and the root module's
//!    layout with abi_stable ([`lib_header_from_path`] and
//!    `init_root_module`: the per-type cache of `RootModule::load_from_file`
//!    would return the first plugin for every later file);
//! 5. read the plugin's metadata and its field descriptions.
//!
//! Libraries are never unloaded: strings and trait objects a plugin made
//! point into its code, so a loaded image stays mapped for the life of the
//! process.

use crate::preflight;
use abi_stable::library::{lib_header_from_path, LibraryError, RootModule};
use posthandler_abi::{fields::FieldDescription, PostProcessorPluginRef, INTERFACE_VERSION};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The file name ending of plugin libraries on this platform (`.so` here).
pub const LIBRARY_SUFFIX: &str = std::env::consts::DLL_SUFFIX;

/// A plugin that passed every check.
pub struct Plugin {
    /// The name chain entries use, such as `OAuth 2.0`.
    pub name: String,
    /// The plugin's own version.
    pub version: semver::Version,
    /// The interface version it was built against.
    pub interface_version: String,
    /// One line for listings.
    pub description: String,
    /// The file in the plugin folder it came from.
    pub file: PathBuf,
    /// The private copy that is actually mapped.
    pub copy: PathBuf,
    /// sha256 of the file, in hex, when an allow-list asked for it.
    /// Hashing a 4 MB plugin takes 4–10 ms, about half of a load, for a
    /// value nothing else reads.
    pub sha256: Option<String>,
    /// The plugin's configuration fields.
    pub fields: Vec<FieldDescription>,
    /// The root module.
    pub module: PostProcessorPluginRef,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("version", &self.version.to_string())
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// Why a file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read or copied.
    #[error("{action} failed: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The name is a library's, but it is no regular file: what it is
    /// instead (a folder, a FIFO, a link to nothing, ...).
    #[error("not a regular file but {0}")]
    NotAFile(&'static str),
    /// The file is not a complete shared library for this machine.
    #[error("{0}")]
    NotALibrary(#[from] preflight::PreflightError),
    /// The operating system's loader refused the file.
    #[error("the loader refused it: {0}")]
    Open(String),
    /// The library exports no posthandler root module.
    #[error("not a posthandler plugin (it exports no posthandler root module)")]
    NotAPlugin,
    /// The plugin was built against an interface version this host cannot
    /// serve.
    #[error(
        "incompatible interface: the plugin was built against interface {plugin}, \
         this host serves {host_range} (host interface {host})"
    )]
    IncompatibleInterface {
        /// The version the plugin was built against.
        plugin: String,
        /// The host's interface version.
        host: String,
        /// The versions the host serves, ready to print.
        host_range: String,
    },
    /// abi_stable found a different layout of the root module.
    #[error("incompatible interface layout (plugin built against interface {plugin}): {detail}")]
    Layout {
        /// The version the plugin says it was built against.
        plugin: String,
        /// abi_stable's first line.
        detail: String,
    },
    /// The operator's allow-list does not hold the file's hash; the file was
    /// not opened.
    #[error("not on the allow-list (sha256 {sha256})")]
    NotAllowed {
        /// The file's hash, to add to the list if the file is trusted.
        sha256: String,
    },
    /// The plugin's root module or metadata is unusable.
    #[error("the plugin failed to start: {0}")]
    Startup(String),
}

/// A file that was refused, with its cause.
#[derive(Debug)]
pub struct Refused {
    /// The file in the plugin folder.
    pub file: PathBuf,
    /// Why.
    pub error: LoadError,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin file {}: {}", self.file.display(), self.error)
    }
}

/// What a load of a whole folder found.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Plugins that loaded, in file name order.
    pub plugins: Vec<Arc<Plugin>>,
    /// Files that were refused.
    pub refused: Vec<Refused>,
    /// Files that do not look like libraries and were not opened.
    pub skipped: Vec<PathBuf>,
}

impl Discovery {
    /// The plugin that serves `name`: the highest version loaded.
    pub fn active(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.plugins
            .iter()
            .filter(|p| p.name == name)
            .max_by(|a, b| a.version.cmp(&b.version))
    }

    /// A one-line summary of what loaded and what did not, for error hints.
    pub fn summary(&self) -> String {
        let loaded: Vec<String> = self
            .plugins
            .iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect();
        let mut out = if loaded.is_empty() {
            "no plugin loaded".to_owned()
        } else {
            format!("loaded: {}", loaded.join(", "))
        };
        if !self.refused.is_empty() {
            out.push_str(&format!("; {} file(s) refused", self.refused.len()));
        }
        out
    }
}

/// Loads plugin files into private copies under one state folder.
#[derive(Debug)]
pub struct Loader {
    state_dir: PathBuf,
    /// Whether the folder is this process's own, removed by [`Loader::cleanup`].
    owned: bool,
    allowed: Option<std::collections::HashSet<String>>,
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// What `path`, which is no regular file, is, for [`LoadError::NotAFile`].
pub fn not_a_file(path: &Path) -> &'static str {
    match std::fs::metadata(path) {
        Ok(meta) => crate::context::file_kind(meta.file_type()),
        Err(_) if path.is_symlink() => "a link to nothing",
        Err(_) => "gone",
    }
}

static COPY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The file that marks a folder as a state folder of `posthandler-host`;
/// only a folder that has it (or is empty) is ever emptied.
pub const STATE_MARKER: &str = ".posthandler-host-state";

impl Loader {
    /// A loader whose private copies go into `state_dir`, which it creates,
    /// or empties when it is a state folder of an earlier run.
    ///
    /// # Errors
    ///
    /// The folder cannot be made, or it holds files and is not a state
    /// folder (no [`STATE_MARKER`]): the loader never deletes what it did
    /// not make.
    pub fn new(state_dir: impl Into<PathBuf>) -> Result<Self, crate::Error> {
        let state_dir = state_dir.into();
        prepare_state_dir(&state_dir)?;
        Ok(Loader {
            state_dir,
            owned: false,
            allowed: None,
        })
    }

    /// A loader with a state folder of this process's own,
    /// `<temporary folder>/posthandler-host-<uid>/<pid>`, removed again by
    /// [`Loader::cleanup`]. Folders that ended processes left there are
    /// removed first.
    ///
    /// # Errors
    ///
    /// The parent folder is not a folder of this user closed to others (a
    /// folder another user can write to would let them swap a plugin copy
    /// before it is opened), or a folder cannot be made.
    pub fn in_process_state_dir() -> Result<Self, crate::Error> {
        let state_dir = process_state_dir()?;
        prepare_state_dir(&state_dir)?;
        Ok(Loader {
            state_dir,
            owned: true,
            allowed: None,
        })
    }

    /// Removes the private copies, and the state folder too when it is the
    /// process's own. Mapped images stay valid: an unlinked file stays
    /// readable while it is mapped. Dropping the loader does the same, so
    /// a run that ends early with an error leaves nothing behind either.
    pub fn cleanup(&self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.state_dir);
        } else {
            let _ = empty_state_dir(&self.state_dir);
        }
    }

    /// Opens only files whose sha256 (lower-case hex) is in `hashes`.
    ///
    /// Opening a library runs its code, so an operator who does not trust
    /// everyone who can write to the plugin folder lists the files they do.
    pub fn with_allow_list(mut self, hashes: impl IntoIterator<Item = String>) -> Self {
        self.allowed = Some(hashes.into_iter().map(|h| h.to_ascii_lowercase()).collect());
        self
    }

    /// The folder private copies go into.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Loads every library file in `dir`, in file name order.
    ///
    /// # Errors
    ///
    /// Only when the folder itself cannot be read; a bad file is reported in
    /// [`Discovery::refused`].
    pub fn load_folder(&self, dir: &Path) -> Result<Discovery, crate::Error> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| crate::Error::Io {
                path: dir.to_path_buf(),
                action: "reading the plugin folder",
                source,
            })?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect();
        files.sort();

        let mut discovery = Discovery::default();
        for file in files {
            let regular = file.is_file();
            if !regular && is_library_name(&file) {
                // A directory, FIFO, device or dangling link with a library's
                // name: never read (a FIFO would block the host).
                let kind = not_a_file(&file);
                discovery.refused.push(Refused {
                    file,
                    error: LoadError::NotAFile(kind),
                });
                continue;
            }
            if !regular || !is_library_name(&file) {
                log::debug!("skipping {}: not a {LIBRARY_SUFFIX} file", file.display());
                discovery.skipped.push(file);
                continue;
            }
            match self.load_file(&file) {
                Ok(plugin) => {
                    log::debug!(
                        "loaded plugin '{}' {} from {}",
                        plugin.name,
                        plugin.version,
                        file.display()
                    );
                    discovery.plugins.push(Arc::new(plugin));
                }
                Err(error) => discovery.refused.push(Refused { file, error }),
            }
        }
        Ok(discovery)
    }

    /// Loads one plugin file (see the module documentation for the steps).
    pub fn load_file(&self, file: &Path) -> Result<Plugin, LoadError> {
        let io = |action| move |source| LoadError::Io { action, source };
        let data = std::fs::read(file).map_err(io("reading the file"))?;
        let sha256 = match &self.allowed {
            Some(allowed) => {
                let sha256 = hex(&Sha256::digest(&data));
                if !allowed.contains(&sha256) {
                    return Err(LoadError::NotAllowed { sha256 });
                }
                Some(sha256)
            }
            None => None,
        };
        preflight::check(&data)?;

        let copy = self.state_dir.join(format!(
            "{}-{}",
            COPY_COUNTER.fetch_add(1, Ordering::Relaxed),
            file.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("plugin")
        ));
        write_new(&copy, &data).map_err(io("making the private copy"))?;
        drop(data);

        let module = open_module(&copy)?;
        let metadata = (module.metadata())();
        let fields = posthandler_abi::fields::parse(&metadata.fields_json).map_err(|err| {
            LoadError::Startup(format!("its field descriptions are not valid: {err}"))
        })?;
        let version = semver::Version::parse(&metadata.version).map_err(|err| {
            LoadError::Startup(format!(
                "its version '{}' is not a semantic version: {err}",
                metadata.version.escape_debug()
            ))
        })?;
        if metadata.name.trim().is_empty() {
            return Err(LoadError::Startup("it reports an empty name".into()));
        }
        Ok(Plugin {
            name: metadata.name.into_string(),
            version,
            interface_version: metadata.interface_version.into_string(),
            description: metadata.description.into_string(),
            file: file.to_path_buf(),
            copy,
            sha256,
            fields,
            module,
        })
    }
}

fn state_error(dir: &Path, cause: impl Into<String>) -> crate::Error {
    crate::Error::StateDir {
        path: dir.to_path_buf(),
        cause: cause.into(),
    }
}

/// Creates `dir`, or empties it when it is a state folder; marks it.
fn prepare_state_dir(dir: &Path) -> Result<(), crate::Error> {
    let io = |source| crate::Error::Io {
        path: dir.to_path_buf(),
        action: "preparing the state folder",
        source,
    };
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if !meta.is_dir() => return Err(state_error(dir, "is not a folder")),
        Ok(_) => {
            let is_state = dir.join(STATE_MARKER).is_file();
            let empty = std::fs::read_dir(dir).map_err(io)?.next().is_none();
            if !is_state && !empty {
                return Err(state_error(
                    dir,
                    "holds files and is not a state folder of posthandler-host; refusing to empty it (give a new or empty folder)",
                ));
            }
            empty_state_dir(dir).map_err(io)?;
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        Err(err) => return Err(io(err)),
    }
    std::fs::write(
        dir.join(STATE_MARKER),
        "private copies of plugin files; posthandler-host empties this folder\n",
    )
    .map_err(io)
}

/// Removes everything in a state folder but its marker.
fn empty_state_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == STATE_MARKER {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// `<temporary folder>/posthandler-host-<uid>/<pid>`, after checking the
/// parent and removing what ended processes left in it.
fn process_state_dir() -> Result<PathBuf, crate::Error> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|source| crate::Error::Io {
            path: "/proc/self".into(),
            action: "finding this process's user",
            source,
        })?;
    let parent = std::env::temp_dir().join(format!("posthandler-host-{uid}"));
    match std::fs::symlink_metadata(&parent) {
        Ok(meta) => {
            if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
                return Err(state_error(
                    &parent,
                    "is not a folder of this user closed to others; refusing to keep plugin copies there (remove it, or give --state-dir)",
                ));
            }
        }
        Err(_) => {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(&parent)
                .map_err(|source| crate::Error::Io {
                    path: parent.clone(),
                    action: "creating the state folder",
                    source,
                })?;
        }
    }
    let own = std::process::id();
    for entry in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let ended = pid != own && !Path::new("/proc").join(pid.to_string()).exists();
        if ended && entry.path().join(STATE_MARKER).is_file() {
            // A process that was killed could not clean up after itself.
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(parent.join(own.to_string()))
}

/// Reads an allow-list file: one sha256 in hex per line; blank lines and
/// text after `#` are ignored.
///
/// # Errors
///
/// The file cannot be read, or a line is not a sha256 in hex.
pub fn read_allow_list(path: &Path) -> Result<Vec<String>, crate::Error> {
    // 1 MiB holds some 15,000 hashes; /dev/zero is refused, not read.
    let text = crate::context::read_capped(path, 1 << 20).map_err(|source| crate::Error::Io {
        path: path.to_path_buf(),
        action: "reading the allow-list",
        source,
    })?;
    let mut hashes = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        // `sha256sum` output has the file name after the hash.
        let hash = entry.split_whitespace().next().unwrap_or("");
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(crate::Error::context(
                format!("{}:{}", path.display(), number + 1),
                "not a sha256 in hex",
            ));
        }
        hashes.push(hash.to_ascii_lowercase());
    }
    Ok(hashes)
}

/// Whether `path` has the platform's library ending.
pub fn is_library_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(LIBRARY_SUFFIX) && !n.starts_with('.'))
}

/// The interface versions this host serves, for messages.
pub fn served_interface_range() -> String {
    let major = INTERFACE_VERSION.split('.').next().unwrap_or("?");
    let minor = INTERFACE_VERSION.split('.').nth(1).unwrap_or("0");
    format!("{major}.x from {major}.{minor}")
}

fn open_module(copy: &Path) -> Result<PostProcessorPluginRef, LoadError> {
    let header = lib_header_from_path(copy).map_err(|err| match err {
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin,
        LibraryError::OpenError { err, .. } => LoadError::Open(err.to_string()),
        other => LoadError::Open(first_line(&other.to_string())),
    })?;
    let plugin_interface = header.version_strings().version.to_string();
    header
        .init_root_module::<PostProcessorPluginRef>()
        .map_err(|err| match err {
            LibraryError::IncompatibleVersionNumber { .. } | LibraryError::ParseVersionError(_) => {
                LoadError::IncompatibleInterface {
                    plugin: plugin_interface.clone(),
                    host: INTERFACE_VERSION.to_owned(),
                    host_range: served_interface_range(),
                }
            }
            LibraryError::AbiInstability(detail) => LoadError::Layout {
                plugin: plugin_interface.clone(),
                detail: layout_causes(&detail.to_string()),
            },
            other => LoadError::Startup(first_line(&other.to_string())),
        })
}

/// Only the first non-empty line of abi_stable's multi-line messages.
fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error")
        .to_owned()
}

/// The causes in abi_stable's layout report (its `Error:` lines, in order,
/// without repeats); the report itself runs to hundreds of lines.
fn layout_causes(report: &str) -> String {
    let mut causes: Vec<&str> = Vec::new();
    for line in report.lines() {
        if let Some((_, cause)) = line.split_once("Error:") {
            let cause = cause.trim();
            if !cause.is_empty() && !causes.contains(&cause) {
                causes.push(cause);
            }
        }
    }
    if causes.is_empty() {
        return first_line(report);
    }
    causes.join("; ")
}

/// Writes the private copy. It is not synced to disk: `dlopen` reads it
/// through the page cache right away, and the copy is of no use after a
/// crash (the state folder of a dead process is removed). Syncing cost
/// about 3 ms of a 20 ms load.
fn write_new(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(data)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// The root module name is part of the symbol abi_stable looks up; keeping
// this reference makes a rename of the trait's constants a compile error here.
const _: &str = <PostProcessorPluginRef as RootModule>::BASE_NAME;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_library_names_are_candidates() {
        assert!(is_library_name(Path::new("/p/liboauth.so")));
        assert!(!is_library_name(Path::new("/p/readme.txt")));
        assert!(!is_library_name(Path::new("/p/.liboauth.so")));
    }

    #[test]
    fn library_names_that_are_no_regular_files_are_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("x.so")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("z.so")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("gone.so")).unwrap();
        let fifo = dir.path().join("f.so");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        let loader = Loader::new(dir.path().join("state")).unwrap();
        let found = loader.load_folder(dir.path()).unwrap();
        let mut refused: Vec<(String, &str)> = found
            .refused
            .iter()
            .filter_map(|r| match r.error {
                LoadError::NotAFile(kind) => Some((
                    r.file.file_name().unwrap().to_string_lossy().into_owned(),
                    kind,
                )),
                _ => None,
            })
            .collect();
        refused.sort();
        let mut expected = vec![
            ("gone.so".to_owned(), "a link to nothing"),
            ("x.so".to_owned(), "a folder"),
            ("z.so".to_owned(), "a device"),
        ];
        if made.is_ok_and(|s| s.success()) {
            expected.insert(0, ("f.so".to_owned(), "a FIFO"));
        }
        assert_eq!(refused, expected);
    }

    #[test]
    fn a_text_file_is_refused_with_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("libfake.so");
        std::fs::write(&file, "not a library").unwrap();
        let loader = Loader::new(dir.path().join("state")).unwrap();
        let err = loader.load_file(&file).unwrap_err();
        assert!(matches!(err, LoadError::NotALibrary(_)), "{err}");
        assert!(err.to_string().contains("no ELF header"));
    }

    #[test]
    fn layout_reports_are_cut_to_their_causes() {
        let report = "Compared <this>:\n  ...\nError:incompatible type size\n  more\n Error: too many fields\nError:incompatible type size\n";
        assert_eq!(
            layout_causes(report),
            "incompatible type size; too many fields"
        );
        assert_eq!(layout_causes("\n something else\n"), "something else");
    }

    #[test]
    fn a_file_off_the_allow_list_is_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("libfake.so");
        // Not even a library: refused before the preflight would say so.
        std::fs::write(&file, "not a library").unwrap();
        let loader = Loader::new(dir.path().join("state"))
            .unwrap()
            .with_allow_list(["00".repeat(32)]);
        let err = loader.load_file(&file).unwrap_err();
        assert!(matches!(err, LoadError::NotAllowed { .. }), "{err}");
        assert!(err
            .to_string()
            .starts_with("not on the allow-list (sha256 "));
    }

    #[test]
    fn allow_lists_take_sha256sum_output_and_comments() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("allow.txt");
        let hash = "ab".repeat(32);
        std::fs::write(&list, format!("# trusted\n{hash}  liboauth.so\n\n")).unwrap();
        assert_eq!(read_allow_list(&list).unwrap(), [hash]);
        std::fs::write(&list, "nothex\n").unwrap();
        let err = read_allow_list(&list).unwrap_err().to_string();
        assert!(err.ends_with(":1: not a sha256 in hex"), "{err}");
        // Regression: an endless file was read until memory ran out.
        match read_allow_list(Path::new("/dev/zero")).unwrap_err() {
            crate::Error::Io { source, .. } => {
                assert_eq!(source.to_string(), "longer than 1048576 bytes");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_state_folder_of_an_earlier_run_is_emptied_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        Loader::new(&state).unwrap();
        std::fs::write(state.join("0-abc-liboauth.so"), "x").unwrap();
        std::fs::create_dir(state.join("sub")).unwrap();
        let loader = Loader::new(&state).unwrap();
        let left: Vec<_> = std::fs::read_dir(&state)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, [STATE_MARKER]);
        loader.cleanup();
        assert!(state.is_dir(), "a folder the user gave stays");
    }

    #[test]
    fn a_folder_that_is_not_a_state_folder_is_never_emptied() {
        // Regression: --state-dir removed whatever folder it was given.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "important").unwrap();
        let err = Loader::new(dir.path()).unwrap_err().to_string();
        assert!(err.contains("refusing to empty it"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
            "important"
        );
        let file = dir.path().join("keep.txt");
        assert!(Loader::new(&file)
            .unwrap_err()
            .to_string()
            .ends_with("is not a folder"));
    }

    #[test]
    fn the_process_state_folder_is_private_and_removed_at_the_end() {
        use std::os::unix::fs::MetadataExt;
        let loader = Loader::in_process_state_dir().unwrap();
        let parent = loader.state_dir().parent().unwrap().to_path_buf();
        assert_eq!(std::fs::metadata(&parent).unwrap().mode() & 0o077, 0);
        // A folder an ended process left (pid numbers above the kernel's
        // maximum are never running).
        let stale = parent.join("4194305");
        Loader::new(&stale).unwrap();
        let again = Loader::in_process_state_dir().unwrap();
        assert!(!stale.exists(), "leftovers of ended processes are removed");
        again.cleanup();
        assert!(!again.state_dir().exists());
    }
}
