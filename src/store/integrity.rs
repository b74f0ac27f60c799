//! Checksummed sets of files, and a place to put damaged ones.
//!
//! A [`FileManifest`] lists files with their size and XXH3-64 checksum. It is written after
//! the files it lists, so its presence means they were complete, and checking it tells an
//! intact set from one that was truncated, zeroed, bit-flipped or partly deleted since.
//! XXH3 reads at memory speed (checksumming a full-width Inception-ResNet-v2 checkpoint, about
//! 1 GB, costs well under a second next to writing it); it guards against damage, not
//! against tampering.
//!
//! Damaged files are never deleted: [`set_aside`] moves them into the run folder's
//! `damaged/` folder under a time-stamped name, so nothing a user might still want is lost.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use super::atomic::{self, AtomicWriteError};

/// Version of the manifest schema written by this code.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;
/// The checksum every manifest of this version uses.
pub const CHECKSUM_NAME: &str = "xxh3-64";

/// Size and checksum of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSum {
    pub bytes: u64,
    /// XXH3-64 of the content, 16 lower-case hex digits.
    pub xxh3_64: String,
}

/// Files of one folder (by name) with their sizes and checksums.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileManifest {
    pub format_version: u32,
    /// The checksum algorithm, [`CHECKSUM_NAME`].
    pub checksum: String,
    pub files: BTreeMap<String, FileSum>,
}

/// What is wrong with a file: the path and, in words, the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub path: PathBuf,
    pub problem: String,
}

impl Damage {
    pub fn new(path: impl Into<PathBuf>, problem: impl fmt::Display) -> Self {
        Self {
            path: path.into(),
            problem: problem.to_string(),
        }
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

impl std::error::Error for Damage {}

/// Size and XXH3-64 of the file at `path`, read in 4 MiB pieces.
pub fn sum_file(path: &Path) -> io::Result<FileSum> {
    let mut file = File::open(path)?;
    let mut hasher = Xxh3::new();
    let mut buf = vec![0u8; 4 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileSum {
        bytes,
        xxh3_64: format!("{:016x}", hasher.digest()),
    })
}

impl FileManifest {
    /// The manifest of the files `names` of `dir`, as they are now.
    pub fn of_files(dir: &Path, names: &[&str]) -> io::Result<Self> {
        let files = names
            .iter()
            .map(|name| {
                let path = dir.join(name);
                sum_file(&path)
                    .map(|sum| (name.to_string(), sum))
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
            })
            .collect::<io::Result<_>>()?;
        Ok(Self {
            format_version: MANIFEST_FORMAT_VERSION,
            checksum: CHECKSUM_NAME.to_string(),
            files,
        })
    }

    /// Checks every listed file of `dir` against the manifest; the first problem found.
    pub fn verify(&self, dir: &Path) -> Result<(), Damage> {
        self.files
            .keys()
            .try_for_each(|name| self.verify_file(dir, name))
    }

    /// Checks the file `name` of `dir` against its entry (no entry: nothing to check).
    pub fn verify_file(&self, dir: &Path, name: &str) -> Result<(), Damage> {
        let Some(want) = self.files.get(name) else {
            return Ok(());
        };
        let path = dir.join(name);
        let found = match sum_file(&path) {
            Ok(sum) => sum,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Damage::new(path, "missing"))
            }
            Err(e) => return Err(Damage::new(path, format!("unreadable ({e})"))),
        };
        if found.bytes != want.bytes {
            let how = match found.bytes < want.bytes {
                true => "truncated",
                false => "overwritten or extended",
            };
            return Err(Damage::new(
                path,
                format!(
                    "{} bytes where {} were written ({how})",
                    found.bytes, want.bytes
                ),
            ));
        }
        if found.xxh3_64 != want.xxh3_64 {
            return Err(Damage::new(
                path,
                "content changed since it was written (checksum mismatch)",
            ));
        }
        Ok(())
    }

    /// Reads a manifest; a missing, unreadable or malformed file is damage.
    pub fn read(path: &Path) -> Result<Self, Damage> {
        let text = match fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Damage::new(path, "missing"))
            }
            Err(e) => return Err(Damage::new(path, format!("unreadable ({e})"))),
        };
        let manifest: Self = serde_json::from_slice(&text)
            .map_err(|e| Damage::new(path, format!("not a valid manifest ({e})")))?;
        if manifest.format_version != MANIFEST_FORMAT_VERSION || manifest.checksum != CHECKSUM_NAME
        {
            return Err(Damage::new(
                path,
                format!(
                    "manifest format {} with {}; this program reads format {MANIFEST_FORMAT_VERSION} with {CHECKSUM_NAME}",
                    manifest.format_version, manifest.checksum
                ),
            ));
        }
        Ok(manifest)
    }

    /// Writes the manifest atomically.
    pub fn write(&self, path: &Path) -> Result<(), AtomicWriteError> {
        atomic::write_json(path, self)
    }
}

/// Records the current size and checksum of `dir/name` in `dir/checksums`, a
/// [`FileManifest`] kept up to date as the files it lists are rewritten (call it after each
/// atomic write; the caller holds the folder's lock).
pub fn record_checksum(dir: &Path, checksums: &str, name: &str) -> Result<(), AtomicWriteError> {
    let path = dir.join(checksums);
    let mut manifest = FileManifest::read(&path).unwrap_or_else(|_| FileManifest {
        format_version: MANIFEST_FORMAT_VERSION,
        checksum: CHECKSUM_NAME.to_string(),
        files: BTreeMap::new(),
    });
    let sum = sum_file(&dir.join(name)).map_err(|source| AtomicWriteError::Io {
        path: dir.join(name),
        source,
    })?;
    manifest.files.insert(name.to_string(), sum);
    manifest.write(&path)
}

/// The files listed in `dir/checksums` that are missing or differ from their record, and
/// `checksums` itself when it exists but cannot be read (then nothing else can be checked).
pub fn recorded_damage(dir: &Path, checksums: &str) -> Vec<Damage> {
    let path = dir.join(checksums);
    if !path.exists() {
        return Vec::new();
    }
    match FileManifest::read(&path) {
        Ok(manifest) => manifest
            .files
            .keys()
            .filter_map(|name| manifest.verify_file(dir, name).err())
            .collect(),
        Err(damage) => vec![damage],
    }
}

/// Moves the file or folder `path` into `aside` (created if needed) as
/// `<name>.<UTC time>` (with a counter if that exists); returns the new path.
pub fn set_aside(path: &Path, aside: &Path) -> io::Result<PathBuf> {
    fs::create_dir_all(aside)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let target = free_aside_name(aside, &name);
    fs::rename(path, &target)?;
    atomic::sync_dir(aside)?;
    atomic::sync_dir(atomic::parent_dir(path))?;
    Ok(target)
}

/// `<aside>/<name>.<UTC time>`, with a counter when that is taken.
pub fn free_aside_name(aside: &Path, name: &str) -> PathBuf {
    let stamp = super::clock::now_rfc3339().replace([':', '-'], "");
    let mut target = aside.join(format!("{name}.{stamp}"));
    let mut n = 1;
    while target.exists() {
        n += 1;
        target = aside.join(format!("{name}.{stamp}.{n}"));
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_of(dir: &Path) -> FileManifest {
        fs::write(dir.join("a.bin"), vec![7u8; 10_000]).unwrap();
        fs::write(dir.join("b.json"), b"{\"step\": 3}\n").unwrap();
        FileManifest::of_files(dir, &["a.bin", "b.json"]).unwrap()
    }

    #[test]
    fn intact_files_pass_and_round_trip_through_json() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest_of(dir.path());
        m.verify(dir.path()).unwrap();
        m.write(&dir.path().join("manifest.json")).unwrap();
        assert_eq!(FileManifest::read(&dir.path().join("manifest.json")), Ok(m));
    }

    #[test]
    fn each_kind_of_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest_of(dir.path());
        let a = dir.path().join("a.bin");
        let check = |m: &FileManifest| m.verify(dir.path()).unwrap_err();

        let mut bytes = fs::read(&a).unwrap();
        bytes[5_000] ^= 0x10;
        fs::write(&a, &bytes).unwrap();
        let d = check(&m);
        assert_eq!(d.path, a);
        assert!(d.problem.contains("checksum mismatch"), "{d}");

        fs::write(&a, vec![7u8; 4_000]).unwrap();
        assert!(
            check(&m).problem.contains("4000 bytes where 10000"),
            "{}",
            check(&m)
        );

        fs::write(&a, vec![0u8; 10_000]).unwrap();
        assert!(check(&m).problem.contains("checksum mismatch"));

        fs::remove_file(&a).unwrap();
        assert_eq!(check(&m).problem, "missing");
    }

    #[test]
    fn a_damaged_manifest_is_damage_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        assert_eq!(FileManifest::read(&path).unwrap_err().problem, "missing");
        fs::write(&path, b"{\"format_version\": 1, \"chec").unwrap();
        let d = FileManifest::read(&path).unwrap_err();
        assert!(d.problem.starts_with("not a valid manifest"), "{d}");
    }

    #[test]
    fn set_aside_keeps_the_file_under_a_new_name() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("metrics.parquet");
        fs::write(&f, b"x").unwrap();
        let aside = dir.path().join("damaged");
        let moved = set_aside(&f, &aside).unwrap();
        assert!(!f.exists());
        assert_eq!(fs::read(&moved).unwrap(), b"x");
        assert!(moved
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("metrics.parquet.20"));
        fs::write(&f, b"y").unwrap();
        let again = set_aside(&f, &aside).unwrap();
        assert_ne!(again, moved);
    }
}
