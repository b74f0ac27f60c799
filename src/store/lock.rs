//! An exclusive lock on a run folder, so two `repro` processes never write the same results.
//!
//! The lock is an OS advisory lock (`flock` on Unix, `LockFileEx` on Windows, through
//! `std::fs::File::try_lock`) on `<dir>/.lock`. The OS drops it when the process exits or is
//! killed, so a crashed run never leaves a stale lock behind; the file itself stays and
//! only carries a description of the current holder for error messages.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Name of the lock file inside a locked folder.
pub const LOCK_FILE: &str = ".lock";

/// Errors of locking a run folder.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process (or another lock in this one) holds the folder.
    #[error("results folder {dir} is in use by {holder}")]
    Held { dir: PathBuf, holder: String },
    /// Waiting for the lock gave up.
    #[error("results folder {dir} still in use by {holder} after waiting {}", super::clock::duration_text(waited.as_secs_f64()))]
    Timeout {
        dir: PathBuf,
        holder: String,
        waited: Duration,
    },
    /// The lock file could not be created, locked or written.
    #[error("locking {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Who holds a lock: written into the lock file by the holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Process id.
    pub pid: u32,
    /// Host name, or "unknown".
    pub host: String,
    /// When the lock was taken, RFC 3339 UTC.
    pub since: String,
}

impl LockHolder {
    fn current() -> Self {
        Self {
            pid: std::process::id(),
            host: host_name(),
            since: super::clock::now_rfc3339(),
        }
    }
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {} since {}", self.pid, self.host, self.since)
    }
}

/// This machine's name, or "unknown".
pub fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// An exclusive lock on a folder, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    dir: PathBuf,
    file: File,
}

impl RunLock {
    /// Locks `dir` (which must exist) or fails at once with [`LockError::Held`] naming the
    /// folder and the current holder.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        // Opened without truncation: the holder's description must survive a failed attempt.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    holder: describe_holder(&mut file),
                })
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        let holder = serde_json::to_string(&LockHolder::current()).expect("plain struct");
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(holder.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(io_err)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
        })
    }

    /// Like [`RunLock::acquire`], but retries until `timeout` has passed.
    pub fn acquire_waiting(dir: &Path, timeout: Duration) -> Result<Self, LockError> {
        let start = Instant::now();
        loop {
            match Self::acquire(dir) {
                Err(LockError::Held { dir, holder }) => {
                    let waited = start.elapsed();
                    if waited >= timeout {
                        return Err(LockError::Timeout {
                            dir,
                            holder,
                            waited,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100).min(timeout - waited));
                }
                other => return other,
            }
        }
    }

    /// The locked folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Clear the description first so a stale file never names a live-looking holder;
        // closing the file would release the lock anyway.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// The holder a run folder's lock file names, if any, read without touching the lock (so
/// that looking never gets in the way of a process about to take it). A process killed
/// with SIGKILL leaves its description behind: see [`LockHolder::alive`].
pub fn recorded_holder(dir: &Path) -> Option<LockHolder> {
    let text = fs::read_to_string(dir.join(LOCK_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

impl LockHolder {
    /// Whether the holder still runs: `Some` on its own host (from the process table),
    /// `None` when it ran on another host.
    pub fn alive(&self) -> Option<bool> {
        (self.host == host_name()).then(|| Path::new(&format!("/proc/{}", self.pid)).exists())
    }
}

/// The holder's description read from its lock file, for error messages.
fn describe_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut text));
    match serde_json::from_str::<LockHolder>(&text) {
        Ok(holder) => holder.to_string(),
        Err(_) => "another process (holder details not yet written)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_holder_is_read_without_locking_and_cleared_on_release() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(recorded_holder(dir.path()), None);
        let lock = RunLock::acquire(dir.path()).unwrap();
        let holder = recorded_holder(dir.path()).unwrap();
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.alive(), Some(true));
        drop(lock);
        assert_eq!(recorded_holder(dir.path()), None);
        let gone = LockHolder {
            pid: u32::MAX,
            ..holder.clone()
        };
        assert_eq!(gone.alive(), Some(false));
        let elsewhere = LockHolder {
            host: "another-host".into(),
            ..holder
        };
        assert_eq!(elsewhere.alive(), None);
    }

    #[test]
    fn second_locker_gets_an_error_naming_folder_and_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _first = RunLock::acquire(dir.path()).unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LockError::Held { .. }), "{msg}");
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
    }

    #[test]
    fn lock_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        drop(first);
        let second = RunLock::acquire(dir.path()).unwrap();
        assert_eq!(second.dir(), dir.path());
        let holder: LockHolder =
            serde_json::from_str(&fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap()).unwrap();
        assert_eq!(holder.pid, std::process::id());
    }

    #[test]
    fn waiting_times_out_while_held_and_succeeds_once_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let err = RunLock::acquire_waiting(dir.path(), Duration::from_millis(250)).unwrap_err();
        assert!(matches!(err, LockError::Timeout { .. }), "{err}");

        let path = dir.path().to_path_buf();
        let waiter =
            std::thread::spawn(move || RunLock::acquire_waiting(&path, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(200));
        drop(first);
        assert!(waiter.join().unwrap().is_ok());
    }

    #[test]
    fn missing_folder_is_an_io_error_naming_the_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = RunLock::acquire(&dir.path().join("absent")).unwrap_err();
        assert!(err.to_string().contains(".lock"), "{err}");
    }
}
