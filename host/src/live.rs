//! The plugin folder while `serve` runs: watching it, loading new versions,
//! and swapping the chain that new records start on.
//!
//! A plugin file travels like this:
//!
//! 1. [`LiveChain::poll`] (every [`POLL_INTERVAL`], from the watcher thread)
//!    sees a file added, replaced, renamed or removed, by its size, time and
//!    inode;
//! 2. a changed file is loaded only once two scans in a row see the same
//!    size and time, so a file still being written is waited for, not
//!    loaded half;
//! 3. the [`Loader`] checks it and loads a private copy (the dropped file
//!    may be overwritten or deleted at any time after that);
//! 4. for each plugin name the highest version resident is active; when
//!    that changes for a name the chain uses, the token cache of the old
//!    version is handed to the new one (the `token-cache.*` payloads), a new
//!    [`Chain`] is configured, and only then published.
//!
//! Records take the published chain when they start and finish on it, so a
//! swap never moves a record between versions. Old versions stay mapped
//! (libraries are never unloaded).

use crate::chain::Chain;
use crate::context::Context;
use crate::loader::{Discovery, Loader, Plugin, Refused};
use crate::serve::ChainSource;
use crate::server_type::ServerType;
use abi_stable::std_types::{RResult, RStr};
use posthandler_abi::payload;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// How often the folder is scanned.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// What identifies one content of a file in the folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        meta.is_file().then(|| Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: meta.ino(),
        })
    }
}

/// One file of the folder as the host knows it.
struct Slot {
    /// The content that was last loaded (or refused).
    loaded: Stamp,
    /// The plugin from that content, when it loaded.
    plugin: Option<Arc<Plugin>>,
    /// A newer content seen once, waiting to be seen again unchanged.
    pending: Option<Stamp>,
}

/// The chain of one context, kept current with the plugin folder.
pub struct LiveChain {
    dir: PathBuf,
    loader: Loader,
    context: Context,
    server_type: ServerType,
    slots: Mutex<BTreeMap<PathBuf, Slot>>,
    /// New files seen once, waiting to be seen again unchanged.
    arriving: Mutex<BTreeMap<PathBuf, Stamp>>,
    /// Library names that are no regular file (a folder, a FIFO, a
    /// dangling link), already warned about; warned again after they leave.
    not_files: Mutex<std::collections::BTreeSet<PathBuf>>,
    current: RwLock<Result<Arc<Chain>, String>>,
    /// Chains that were replaced; kept for their counters.
    retired: Mutex<Vec<Arc<Chain>>>,
    swaps: std::sync::atomic::AtomicU64,
}

impl ChainSource for LiveChain {
    fn current(&self) -> Result<Arc<Chain>, String> {
        self.current.read().unwrap().clone()
    }
}

impl LiveChain {
    /// Configures the chain from `discovery`, what `loader` found in `dir`.
    ///
    /// # Errors
    ///
    /// As [`Chain::configure`]: a chain entry whose plugin is missing, or a
    /// plugin that refuses its configuration.
    pub fn start(
        dir: &Path,
        loader: Loader,
        discovery: Discovery,
        context: Context,
        server_type: ServerType,
    ) -> Result<Self, crate::Error> {
        let chain = Chain::configure(context.clone(), &discovery, server_type)?;
        let mut slots = BTreeMap::new();
        for plugin in &discovery.plugins {
            if let Some(stamp) = Stamp::of(&plugin.file) {
                slots.insert(
                    plugin.file.clone(),
                    Slot {
                        loaded: stamp,
                        plugin: Some(plugin.clone()),
                        pending: None,
                    },
                );
            }
        }
        let mut not_files = std::collections::BTreeSet::new();
        for refused in &discovery.refused {
            if matches!(refused.error, crate::loader::LoadError::NotAFile(_)) {
                not_files.insert(refused.file.clone());
            }
            if let Some(stamp) = Stamp::of(&refused.file) {
                slots.insert(
                    refused.file.clone(),
                    Slot {
                        loaded: stamp,
                        plugin: None,
                        pending: None,
                    },
                );
            }
        }
        let live = LiveChain {
            dir: dir.to_path_buf(),
            loader,
            context,
            server_type,
            slots: Mutex::new(slots),
            arriving: Mutex::new(BTreeMap::new()),
            not_files: Mutex::new(not_files),
            current: RwLock::new(Ok(Arc::new(chain))),
            retired: Mutex::new(Vec::new()),
            swaps: Default::default(),
        };
        log::info!("plugins: {}", live.resident_summary());
        Ok(live)
    }

    /// The loader (for its state folder).
    pub fn loader(&self) -> &Loader {
        &self.loader
    }

    /// How many times the chain was replaced.
    pub fn swaps(&self) -> u64 {
        self.swaps.load(Ordering::Relaxed)
    }

    /// Scans the folder once and takes up every change that has settled.
    pub fn poll(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            log::warn!("cannot read the plugin folder {}", self.dir.display());
            return;
        };
        let mut present: BTreeMap<PathBuf, Stamp> = BTreeMap::new();
        let mut not_files = std::collections::BTreeSet::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if crate::loader::is_library_name(&path) {
                match Stamp::of(&path) {
                    Some(stamp) => {
                        present.insert(path, stamp);
                    }
                    None => {
                        not_files.insert(path);
                    }
                }
            }
        }
        {
            let mut warned = self.not_files.lock().unwrap();
            for path in not_files.difference(&warned) {
                log::warn!(
                    "{}",
                    Refused {
                        file: path.clone(),
                        error: crate::loader::LoadError::NotAFile(crate::loader::not_a_file(path)),
                    }
                );
            }
            *warned = not_files;
        }

        let mut changed = false;
        let started = Instant::now();
        let mut slots = self.slots.lock().unwrap();
        let mut arriving = self.arriving.lock().unwrap();

        // Removed files.
        let gone: Vec<PathBuf> = slots
            .keys()
            .filter(|p| !present.contains_key(*p))
            .cloned()
            .collect();
        for path in gone {
            if let Some(slot) = slots.remove(&path) {
                if let Some(plugin) = slot.plugin {
                    log::info!(
                        "plugin file {} removed: '{}' {} is no longer offered",
                        path.display(),
                        plugin.name,
                        plugin.version
                    );
                    changed = true;
                }
            }
        }
        arriving.retain(|p, _| present.contains_key(p));

        // New and changed files, each loaded once it holds still.
        let mut loaded_now: Vec<(PathBuf, Stamp, Result<Plugin, crate::loader::LoadError>)> =
            Vec::new();
        for (path, stamp) in &present {
            let settled = match slots.get_mut(path) {
                Some(slot) if slot.loaded == *stamp => {
                    slot.pending = None;
                    false
                }
                Some(slot) => {
                    let settled = slot.pending == Some(*stamp);
                    slot.pending = Some(*stamp);
                    settled
                }
                None => {
                    let settled = arriving.get(path) == Some(stamp);
                    arriving.insert(path.clone(), *stamp);
                    settled
                }
            };
            if settled {
                arriving.remove(path);
                loaded_now.push((path.clone(), *stamp, self.loader.load_file(path)));
            }
        }
        for (path, stamp, result) in loaded_now {
            match result {
                Ok(plugin) => {
                    log::info!(
                        "plugin file {}: loaded '{}' {}",
                        path.display(),
                        plugin.name,
                        plugin.version
                    );
                    slots.insert(
                        path,
                        Slot {
                            loaded: stamp,
                            plugin: Some(Arc::new(plugin)),
                            pending: None,
                        },
                    );
                    changed = true;
                }
                Err(error) => {
                    log::warn!(
                        "{}",
                        Refused {
                            file: path.clone(),
                            error
                        }
                    );
                    match slots.get_mut(&path) {
                        // The version that came from this file keeps serving.
                        Some(slot) => {
                            slot.loaded = stamp;
                            slot.pending = None;
                        }
                        None => {
                            slots.insert(
                                path,
                                Slot {
                                    loaded: stamp,
                                    plugin: None,
                                    pending: None,
                                },
                            );
                        }
                    }
                }
            }
        }
        if changed {
            let discovery = Discovery {
                plugins: slots.values().filter_map(|s| s.plugin.clone()).collect(),
                ..Discovery::default()
            };
            drop(arriving);
            drop(slots);
            self.republish(&discovery, started);
        }
    }

    /// Configures a new chain when the active plugins the context uses have
    /// changed, and publishes it.
    fn republish(&self, discovery: &Discovery, started: Instant) {
        let old = self.current.read().unwrap().clone();
        let wanted: Vec<Option<Arc<Plugin>>> = self
            .context
            .plugins
            .iter()
            .map(|name| discovery.active(name).cloned())
            .collect();
        if let Ok(old_chain) = &old {
            let same = old_chain
                .plugins()
                .zip(&wanted)
                .all(|(a, b)| b.as_ref().is_some_and(|b| Arc::ptr_eq(a, b)));
            if same {
                log::info!("plugins: {}", self.resident_summary_of(discovery));
                return;
            }
        }
        if let Ok(old_chain) = &old {
            for (from, to) in old_chain.plugins().zip(&wanted) {
                if let Some(to) = to {
                    if !Arc::ptr_eq(from, to) {
                        hand_over_cache(from, to);
                    }
                }
            }
        }
        let next = match Chain::configure(self.context.clone(), discovery, self.server_type) {
            Ok(chain) => Ok(Arc::new(chain)),
            Err(err @ crate::Error::MissingPlugin { .. }) => {
                log::error!("{err}: records fail until a version is back");
                Err(err.to_string())
            }
            Err(err) => {
                // A version that refuses this context does not take over.
                log::error!(
                    "the new plugin set cannot run this context, keeping the running one: {err}"
                );
                return;
            }
        };
        let describe = |chain: &Result<Arc<Chain>, String>| match chain {
            Ok(chain) => chain
                .plugins()
                .map(|p| format!("'{}' {} ({})", p.name, p.version, p.file.display()))
                .collect::<Vec<_>>()
                .join(", "),
            Err(_) => "none".to_owned(),
        };
        let (from, to) = (describe(&old), describe(&next));
        let replaced = std::mem::replace(&mut *self.current.write().unwrap(), next);
        if let Ok(chain) = replaced {
            self.retired.lock().unwrap().push(chain);
        }
        self.swaps.fetch_add(1, Ordering::Relaxed);
        log::info!(
            "swapped chain: {from} -> {to} in {} ms",
            started.elapsed().as_millis()
        );
        log::info!("plugins: {}", self.resident_summary_of(discovery));
    }

    /// Every resident version, marking the active ones.
    pub fn resident_summary(&self) -> String {
        let slots = self.slots.lock().unwrap();
        let discovery = Discovery {
            plugins: slots.values().filter_map(|s| s.plugin.clone()).collect(),
            ..Discovery::default()
        };
        self.resident_summary_of(&discovery)
    }

    fn resident_summary_of(&self, discovery: &Discovery) -> String {
        if discovery.plugins.is_empty() {
            return "none resident".into();
        }
        discovery
            .plugins
            .iter()
            .map(|p| {
                let active = discovery.active(&p.name).is_some_and(|a| Arc::ptr_eq(a, p));
                format!(
                    "'{}' {}{} ({})",
                    p.name,
                    p.version,
                    if active { " [active]" } else { "" },
                    p.file.display()
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The counters of every chain this context ran on, summed.
    pub fn stats(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut chains = self.retired.lock().unwrap().clone();
        if let Ok(chain) = self.current() {
            chains.push(chain);
        }
        let mut total = serde_json::Map::new();
        for chain in &chains {
            crate::chain::add_counts(&mut total, chain.stats());
        }
        total
    }

    /// Scans the folder every [`POLL_INTERVAL`] until `stop` is raised.
    pub fn watch(self: &Arc<Self>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        let live = self.clone();
        std::thread::spawn(move || {
            // Short naps, so that the end of a run does not wait out a
            // whole interval.
            let nap = POLL_INTERVAL / 10;
            'scans: loop {
                for _ in 0..10 {
                    if stop.load(Ordering::SeqCst) {
                        break 'scans;
                    }
                    std::thread::sleep(nap);
                }
                live.poll();
            }
        })
    }
}

/// Moves the token cache of `from` into `to`, when both versions take part.
///
/// A version that does not know the payloads simply starts with an empty
/// cache; that costs one token request and is not an error. The payload
/// holds tokens: it is never logged.
fn hand_over_cache(from: &Plugin, to: &Plugin) {
    let exported = (from.module.call())(
        RStr::from_str(payload::TOKEN_CACHE_EXPORT_V1),
        RStr::from_str("{}"),
    );
    let RResult::ROk(cache) = exported else {
        log::debug!(
            "'{}' {} offers no token cache to hand over",
            from.name,
            from.version
        );
        return;
    };
    match (to.module.call())(
        RStr::from_str(payload::TOKEN_CACHE_IMPORT_V1),
        RStr::from_str(&cache),
    ) {
        RResult::ROk(_) => log::info!(
            "token cache handed over from '{}' {} to {}",
            from.name,
            from.version,
            to.version
        ),
        RResult::RErr(err) => {
            log::debug!("'{}' {} took no token cache: {err}", to.name, to.version)
        }
    }
}
