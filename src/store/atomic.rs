//! Atomic file writes: a reader sees the old file or the new one, never a torn mix.
//!
//! The content goes to a temporary file in the target's directory (same file system, so the
//! rename is atomic), which is fsynced, renamed over the target, and then the directory is
//! fsynced so the rename itself survives a power cut. A failed write removes its temporary
//! file and leaves the old target untouched.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::Tensor;
use serde::Serialize;

/// Errors of an atomic write; each names the file being written.
#[derive(Debug, thiserror::Error)]
pub enum AtomicWriteError {
    /// An I/O step failed.
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The value could not be serialized to JSON.
    #[error("writing {path}: JSON serialization failed: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// candle could not write the tensors.
    #[error("writing {path}: safetensors serialization failed: {source}")]
    Safetensors {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
    /// The content producer reported an error (the message is its `Display`).
    #[error("writing {path}: {message}")]
    Producer { path: PathBuf, message: String },
}

impl AtomicWriteError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Prefix of every temporary file or folder this module creates; never a real file name.
pub const TEMP_PREFIX: &str = ".tmp-";

/// A fresh temporary sibling of `path`: `<dir>/.tmp-<name>-<pid>-<n>`.
pub fn temp_sibling(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = format!("{TEMP_PREFIX}{name}-{}-{n}", std::process::id());
    parent_dir(path).join(tmp)
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fsyncs a directory so that renames and creations inside it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Writes `path` atomically from a producer that receives the temporary file's path and
/// must create that file (for writers that only take a path). On any error the temporary
/// file is removed and `path` is unchanged; the producer's error becomes
/// [`AtomicWriteError::Producer`].
pub fn write_via_temp_path<E: std::fmt::Display>(
    path: &Path,
    produce: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), AtomicWriteError> {
    write_then_rename(path, produce, |path, e| AtomicWriteError::Producer {
        path,
        message: e.to_string(),
    })
}

/// The one implementation behind every writer: produce into a temporary sibling, commit it,
/// and clean up on failure. `wrap` turns the producer's error into ours.
fn write_then_rename<E>(
    path: &Path,
    produce: impl FnOnce(&Path) -> Result<(), E>,
    wrap: impl FnOnce(PathBuf, E) -> AtomicWriteError,
) -> Result<(), AtomicWriteError> {
    let tmp = temp_sibling(path);
    let result = produce(&tmp)
        .map_err(|e| wrap(path.to_path_buf(), e))
        .and_then(|()| commit(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Fsyncs `tmp`, renames it to `path`, fsyncs the directory.
fn commit(tmp: &Path, path: &Path) -> Result<(), AtomicWriteError> {
    let io = AtomicWriteError::io;
    File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(path))?;
    fs::rename(tmp, path).map_err(io(path))?;
    sync_dir(parent_dir(path)).map_err(io(path))
}

/// Writes `path` atomically from a producer that streams into an open file.
pub fn write_with(
    path: &Path,
    produce: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), AtomicWriteError> {
    write_then_rename(
        path,
        |tmp| -> io::Result<()> {
            let mut file = OpenOptions::new().write(true).create_new(true).open(tmp)?;
            produce(&mut file)?;
            file.flush()
        },
        |path, source| AtomicWriteError::Io { path, source },
    )
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    write_with(path, |f| f.write_all(bytes))
}

/// Writes `value` as pretty-printed JSON (with a trailing newline) to `path` atomically.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), AtomicWriteError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| AtomicWriteError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    bytes.push(b'\n');
    write_bytes(path, &bytes)
}

/// Writes `tensors` as a safetensors file to `path` atomically.
pub fn write_safetensors(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
) -> Result<(), AtomicWriteError> {
    write_then_rename(
        path,
        |tmp| candle_core::safetensors::save(tensors, tmp),
        |path, source| AtomicWriteError::Safetensors { path, source },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_files::names_in;

    #[test]
    fn write_replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_json(&path, &serde_json::json!({"x": 1})).unwrap();
        write_json(&path, &serde_json::json!({"x": 2})).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(back["x"], 2);
        assert_eq!(names_in(dir.path()), ["a.json"]);
    }

    #[test]
    fn failing_writer_keeps_the_old_file_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.bin");
        write_bytes(&path, b"old content").unwrap();
        let err = write_with(&path, |f| {
            f.write_all(b"half of the new")?;
            Err(io::Error::other("disk on fire"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("data.bin"), "{err}");
        assert!(err.to_string().contains("disk on fire"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"old content");
        assert_eq!(names_in(dir.path()), ["data.bin"]);
    }

    #[test]
    fn safetensors_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let t = Tensor::new(&[1f32, 2.0, 3.0], &candle_core::Device::Cpu).unwrap();
        let tensors = HashMap::from([("fc.weight".to_string(), t)]);
        write_safetensors(&path, &tensors).unwrap();
        let back = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
        assert_eq!(back["fc.weight"].to_vec1::<f32>().unwrap(), [1.0, 2.0, 3.0]);
        assert_eq!(names_in(dir.path()), ["w.safetensors"]);
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/f.txt");
        let err = write_bytes(&path, b"x").unwrap_err();
        assert!(err.to_string().contains("f.txt"), "{err}");
    }
}
