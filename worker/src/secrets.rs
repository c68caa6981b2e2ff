//! Signing secrets from mounted files, read at start and again whenever they change,
//! so a rotated Secret reaches a running worker without a restart.
//!
//! The kubelet writes a Secret volume with an atomic writer: each version of the
//! Secret is a hidden directory `..<timestamp>/` holding one file per key, the
//! symlink `..data` points at the current one, and each key's visible name is a
//! symlink `key -> ..data/key`. An update writes a new directory, adds the links
//! of new keys (before the swap in newer kubelets, after it in older ones), swaps
//! `..data` with a rename (atomic), removes the links of keys that went and deletes
//! the old directory. A reader can therefore see dangling or missing key links for a
//! moment, or have a directory deleted under it; what it reads through one
//! `..data` target is complete. So a [`SecretSource::Dir`] reads the keys through the
//! resolved `..data` target, and every read checks that `..data` did not move
//! meanwhile. Any failure (a missing or empty file, a swap mid-read, a set the
//! preset refuses) keeps the secrets in use and is retried at the next poll.
//!
//! Polling rather than inotify: the kubelet changes a symlink, not the files, so
//! watches on the files never fire; a poll every few seconds reads a few bytes, and
//! the kubelet itself takes up to a minute or so to propagate a change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::signature::Verifier;

/// The kubelet atomic writer's pointer to the current version of a volume.
const DATA_LINK: &str = "..data";

/// Where the signing secrets are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// These files, one secret each (Secret keys listed in the Webhook).
    Files(Vec<PathBuf>),
    /// Every key of a mounted Secret: the files of the kubelet's current `..data`
    /// version, or, in a directory not written by the kubelet, its regular files
    /// whose names do not start with `.`.
    Dir(PathBuf),
}

/// Why the secrets could not be read; the ones in use stay.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// What was read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A secret file is empty (or only a newline): never a valid secret, and what a
    /// half-written file looks like.
    #[error("{0} is empty")]
    Empty(PathBuf),
    /// The directory holds no secret at all.
    #[error("{0} holds no secret")]
    NoSecrets(PathBuf),
    /// The kubelet swapped the volume's version while it was being read.
    #[error("{0} changed while it was being read")]
    Swapped(PathBuf),
}

impl SecretSource {
    /// Reads the secrets, in a stable order (the files as given; a directory's keys
    /// by name), without trailing newlines.
    pub fn load(&self) -> Result<Vec<Vec<u8>>, LoadError> {
        match self {
            Self::Files(paths) => {
                let mut dirs: Vec<&Path> = paths.iter().filter_map(|p| p.parent()).collect();
                dirs.dedup();
                let before = versions(&dirs);
                let secrets = paths
                    .iter()
                    .map(|path| read_secret(path))
                    .collect::<Result<Vec<_>, _>>()?;
                if versions(&dirs) != before {
                    return Err(LoadError::Swapped(
                        dirs.first().map_or_else(PathBuf::new, |d| d.to_path_buf()),
                    ));
                }
                Ok(secrets)
            }
            Self::Dir(dir) => {
                let before = version(dir);
                let secrets = match &before {
                    Some(target) => read_dir_files(&dir.join(target), false)?,
                    None => read_dir_files(dir, true)?,
                };
                if version(dir) != before {
                    return Err(LoadError::Swapped(dir.clone()));
                }
                if secrets.is_empty() {
                    return Err(LoadError::NoSecrets(dir.clone()));
                }
                Ok(secrets)
            }
        }
    }
}

/// Where `..data` points in `dir`, if the kubelet wrote it.
fn version(dir: &Path) -> Option<PathBuf> {
    std::fs::read_link(dir.join(DATA_LINK)).ok()
}

fn versions(dirs: &[&Path]) -> Vec<Option<PathBuf>> {
    dirs.iter().map(|d| version(d)).collect()
}

fn read_dir_files(dir: &Path, skip_hidden: bool) -> Result<Vec<Vec<u8>>, LoadError> {
    let read_error = |source| LoadError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // `..data`, `..<timestamp>` and `..data_tmp` are the writer's own entries.
        if name.starts_with("..") || (skip_hidden && name.starts_with('.')) {
            continue;
        }
        let path = entry.path();
        // Follows symlinks: a key's visible name is one.
        if std::fs::metadata(&path).map_err(read_error)?.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    paths.iter().map(|p| read_secret(p)).collect()
}

fn read_secret(path: &Path) -> Result<Vec<u8>, LoadError> {
    let mut secret = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // Secrets written by hand often end in a newline that is not part of them.
    while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        secret.pop();
    }
    if secret.is_empty() {
        return Err(LoadError::Empty(path.to_path_buf()));
    }
    Ok(secret)
}

/// Re-reads `source` every `interval` until `shutdown`, and rotates `verifier` to
/// the new set when it differs from `loaded` (the set it was built with).
pub async fn watch(
    source: SecretSource,
    verifier: Arc<Verifier>,
    mut loaded: Vec<Vec<u8>>,
    interval: Duration,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    loaded.sort();
    let mut last_error: Option<String> = None;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let read = source
            .load()
            .map_err(|e| e.to_string())
            .and_then(|mut secrets| {
                secrets.sort();
                if secrets == loaded {
                    return Ok(None);
                }
                let until = verifier
                    .rotate(&secrets, SystemTime::now())
                    .map_err(|e| e.to_string())?;
                Ok(Some((secrets, until)))
            });
        match read {
            Ok(None) => last_error = None,
            Ok(Some((secrets, until))) => {
                last_error = None;
                metrics.secret_reloads.inc();
                info!(
                    secrets = secrets.len(),
                    previous_accepted_until = %unix_seconds(until),
                    "signing secrets changed; the previous ones still verify messages queued before the end of the rotation window"
                );
                loaded = secrets;
            }
            Err(error) => {
                metrics.secret_reload_errors.inc();
                // Once per distinct failure: a broken mount would otherwise log every poll.
                if last_error.as_ref() != Some(&error) {
                    warn!(%error, "could not reload the signing secrets; the ones in use stay");
                    last_error = Some(error);
                }
            }
        }
    }
}

/// An instant for logs, without a date crate.
fn unix_seconds(at: SystemTime) -> String {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or_else(
        |_| "before 1970".to_owned(),
        |d| format!("unix {}", d.as_secs()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory laid out as the kubelet's atomic writer does it (no kubelet runs
    /// in the tests): `..<version>/key` files, `..data` pointing at the current
    /// version, `key -> ..data/key` links. Each step of an update is its own method,
    /// so a test can read between the steps.
    struct KubeletVolume {
        pub dir: PathBuf,
        version: u32,
    }

    impl KubeletVolume {
        pub fn new(dir: PathBuf, data: &[(&str, &str)]) -> Self {
            std::fs::create_dir_all(&dir).unwrap();
            let mut volume = Self { dir, version: 0 };
            let target = volume.write_version(data);
            volume.swap(&target);
            volume.link_keys(data);
            volume
        }

        /// Writes the next version's directory; nothing points at it yet.
        pub fn write_version(&mut self, data: &[(&str, &str)]) -> String {
            self.version += 1;
            let name = format!("..2026_12_01_12_00_00.{:09}", self.version);
            let path = self.dir.join(&name);
            std::fs::create_dir(&path).unwrap();
            for (key, value) in data {
                std::fs::write(path.join(key), value).unwrap();
            }
            name
        }

        /// Points `..data` at `target` as the kubelet does: a new link, renamed over.
        pub fn swap(&self, target: &str) {
            let tmp = self.dir.join("..data_tmp");
            std::os::unix::fs::symlink(target, &tmp).unwrap();
            std::fs::rename(&tmp, self.dir.join(DATA_LINK)).unwrap();
        }

        /// Adds the links of new keys, then removes those of keys that went.
        pub fn link_keys(&self, data: &[(&str, &str)]) {
            for (key, _) in data {
                let link = self.dir.join(key);
                if std::fs::symlink_metadata(&link).is_err() {
                    std::os::unix::fs::symlink(format!("{DATA_LINK}/{key}"), &link).unwrap();
                }
            }
            for entry in std::fs::read_dir(&self.dir).unwrap() {
                let entry = entry.unwrap();
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with("..") && !data.iter().any(|(k, _)| *k == name) {
                    std::fs::remove_file(entry.path()).unwrap();
                }
            }
        }

        /// Removes every version but the current one.
        pub fn remove_old_versions(&self) {
            let current = version(&self.dir).unwrap();
            for entry in std::fs::read_dir(&self.dir).unwrap() {
                let entry = entry.unwrap();
                let name = entry.file_name();
                if name.to_string_lossy().starts_with("..2") && Path::new(&name) != current {
                    std::fs::remove_dir_all(entry.path()).unwrap();
                }
            }
        }

        /// A whole update, in the kubelet's order.
        pub fn update(&mut self, data: &[(&str, &str)]) {
            let target = self.write_version(data);
            self.swap(&target);
            self.link_keys(data);
            self.remove_old_versions();
        }
    }

    impl Drop for KubeletVolume {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hookline-secrets-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn texts(secrets: &[Vec<u8>]) -> Vec<String> {
        secrets
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    #[test]
    fn a_whole_secret_is_read_through_the_current_version() {
        let mut volume = KubeletVolume::new(temp_dir("whole"), &[("a", "old\n")]);
        let source = SecretSource::Dir(volume.dir.clone());
        assert_eq!(texts(&source.load().unwrap()), ["old"]);

        // A new key's link may exist before the swap (dangling until then), or only
        // after it; the key counts from the swap either way.
        let target = volume.write_version(&[("a", "old"), ("b", "new")]);
        volume.link_keys(&[("a", "old"), ("b", "new")]);
        assert_eq!(texts(&source.load().unwrap()), ["old"], "not swapped yet");
        let listed = SecretSource::Files(vec![volume.dir.join("b")]);
        assert!(
            matches!(listed.load(), Err(LoadError::Read { .. })),
            "dangling"
        );
        volume.swap(&target);
        assert_eq!(texts(&listed.load().unwrap()), ["new"]);
        assert_eq!(texts(&source.load().unwrap()), ["old", "new"]);
        volume.link_keys(&[("a", "old"), ("b", "new")]);
        volume.remove_old_versions();
        assert_eq!(texts(&source.load().unwrap()), ["old", "new"]);

        // A key removed: gone as soon as `..data` moves, before its link is removed.
        let target = volume.write_version(&[("b", "new")]);
        volume.swap(&target);
        assert_eq!(texts(&source.load().unwrap()), ["new"]);
        volume.link_keys(&[("b", "new")]);
        volume.update(&[("b", "newer")]);
        assert_eq!(texts(&source.load().unwrap()), ["newer"]);
    }

    #[test]
    fn listed_keys_follow_their_links() {
        let mut volume = KubeletVolume::new(temp_dir("listed"), &[("secret", "one")]);
        let source = SecretSource::Files(vec![volume.dir.join("secret")]);
        assert_eq!(texts(&source.load().unwrap()), ["one"]);
        volume.update(&[("secret", "two")]);
        assert_eq!(texts(&source.load().unwrap()), ["two"]);
    }

    #[test]
    fn a_half_written_or_emptied_secret_is_an_error_not_a_secret() {
        let mut volume = KubeletVolume::new(temp_dir("empty"), &[("secret", "one")]);
        let files = SecretSource::Files(vec![volume.dir.join("secret")]);
        let whole = SecretSource::Dir(volume.dir.clone());
        volume.update(&[("secret", "\n")]);
        assert!(matches!(files.load(), Err(LoadError::Empty(_))));
        assert!(matches!(whole.load(), Err(LoadError::Empty(_))));
        // A listed key the Secret lost: its link dangles, then disappears.
        let target = volume.write_version(&[("other", "x")]);
        volume.swap(&target);
        assert!(matches!(files.load(), Err(LoadError::Read { .. })));
        volume.link_keys(&[("other", "x")]);
        assert!(matches!(files.load(), Err(LoadError::Read { .. })));
        // A Secret with no keys at all.
        volume.update(&[]);
        assert!(matches!(whole.load(), Err(LoadError::NoSecrets(_))));
    }

    #[test]
    fn a_version_deleted_under_the_reader_is_an_error() {
        let volume = KubeletVolume::new(temp_dir("deleted"), &[("a", "one")]);
        let current = version(&volume.dir).unwrap();
        std::fs::remove_dir_all(volume.dir.join(current)).unwrap();
        let whole = SecretSource::Dir(volume.dir.clone());
        assert!(matches!(whole.load(), Err(LoadError::Read { .. })));
    }

    #[test]
    fn a_plain_directory_skips_hidden_files_and_subdirectories() {
        let dir = temp_dir("plain");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("b"), "two").unwrap();
        std::fs::write(dir.join("a"), "one\r\n").unwrap();
        std::fs::write(dir.join(".a.swp"), "editor").unwrap();
        std::fs::write(dir.join("sub/c"), "three").unwrap();
        let source = SecretSource::Dir(dir.clone());
        assert_eq!(texts(&source.load().unwrap()), ["one", "two"]);
        let empty = temp_dir("plain-empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert!(matches!(
            SecretSource::Dir(empty.clone()).load(),
            Err(LoadError::NoSecrets(_))
        ));
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(empty);
    }
}
