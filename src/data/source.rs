//! Image sources: the ImageFolder layout `root/<class>/<image>` and per-class subsets.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use super::error::{DataError, Result};
use super::rng::{SampleRng, Stream};

/// One labelled image file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The image file.
    pub path: PathBuf,
    /// Class index into [`Dataset::classes`].
    pub label: u32,
}

/// Which images a dataset holds. Recorded with every evaluation so that results say
/// which set they were measured on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageSet {
    /// Every image of an ImageFolder tree `root/<class>/<image>`.
    Folder,
    /// The ILSVRC-2012 validation set, all images (50,000 when complete).
    IlsvrcVal,
    /// The ILSVRC-2012 validation set without the devkit blacklist (48,238 when complete),
    /// the set the paper reports on.
    IlsvrcValNonBlacklisted,
    /// Images of a training folder that the run's training subset left out: a second
    /// evaluation set disjoint from both the training images and the validation folder.
    TrainHoldout,
}

impl ImageSet {
    /// A stable identifier for provenance records.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageSet::Folder => "folder",
            ImageSet::IlsvrcVal => "ilsvrc2012-val-all",
            ImageSet::IlsvrcValNonBlacklisted => "ilsvrc2012-val-non-blacklisted",
            ImageSet::TrainHoldout => "train-holdout",
        }
    }
}

impl fmt::Display for ImageSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Files that a scan passed over, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkippedFiles {
    /// Files or folders whose name starts with a dot.
    pub hidden: usize,
    /// Files without a .jpg/.jpeg/.png extension (any case), and files directly under the
    /// root rather than in a class folder.
    pub other: usize,
}

/// Which classes a subset keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClassSelection {
    /// Every class.
    All,
    /// The first N classes in sorted order.
    First(usize),
    /// The named classes (kept in sorted order, whatever the order given).
    Named(Vec<String>),
}

/// A deterministic subset for small runs: some classes, at most M images per class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subset {
    /// The classes kept; class indices are renumbered to positions among them.
    pub classes: ClassSelection,
    /// At most this many images per class, chosen at random from `seed`.
    pub max_per_class: Option<usize>,
    /// Seed of the per-class choice.
    pub seed: u64,
}

impl Subset {
    /// A one-line description for provenance.
    pub fn describe(&self) -> String {
        let classes = match &self.classes {
            ClassSelection::All => "all classes".to_string(),
            ClassSelection::First(n) => format!("first {n} classes"),
            ClassSelection::Named(names) => format!("classes [{}]", names.join(", ")),
        };
        match self.max_per_class {
            Some(m) => format!(
                "{classes}, at most {m} images per class (seed {})",
                self.seed
            ),
            None => classes,
        }
    }
}

/// A labelled list of image files plus where it came from.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The folder the images were found in.
    pub root: PathBuf,
    /// Class names; a sample's label indexes this list.
    pub classes: Vec<String>,
    /// The images, grouped by class in class order, files in sorted order.
    pub samples: Vec<Sample>,
    /// Which set this is (recorded with evaluations).
    pub set: ImageSet,
    /// The subset applied, if any.
    pub subset: Option<Subset>,
    /// Files the scan passed over.
    pub skipped: SkippedFiles,
}

/// Whether a file name has an image extension we decode (.jpg, .jpeg, .png, any case).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        .unwrap_or(false)
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

impl Dataset {
    /// Scans an ImageFolder tree `root/<class>/<image>`. Class index = position in the
    /// sorted class-folder names; files within a class (searched recursively) in sorted
    /// order. Hidden entries and other extensions are skipped and counted.
    pub fn image_folder(root: &Path) -> Result<Dataset> {
        if !root.is_dir() {
            return Err(DataError::MissingRoot(root.to_path_buf()));
        }
        let mut skipped = SkippedFiles::default();
        let mut class_dirs = Vec::new();
        for entry in WalkDir::new(root)
            .min_depth(1)
            .max_depth(1)
            .follow_links(true)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| walk_error(root, e))?;
            if is_hidden(entry.file_name()) {
                skipped.hidden += 1;
            } else if entry.file_type().is_dir() {
                class_dirs.push(entry.into_path());
            } else {
                skipped.other += 1;
            }
        }
        if class_dirs.is_empty() {
            return Err(DataError::NoImages(root.to_path_buf()));
        }
        let mut classes = Vec::with_capacity(class_dirs.len());
        let mut samples = Vec::new();
        for (label, dir) in class_dirs.iter().enumerate() {
            let before = samples.len();
            scan_class(dir, label as u32, &mut samples, &mut skipped)?;
            if samples.len() == before {
                return Err(DataError::EmptyClass(dir.clone()));
            }
            classes.push(
                dir.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        Ok(Dataset {
            root: root.to_path_buf(),
            classes,
            samples,
            set: ImageSet::Folder,
            subset: None,
            skipped,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// A one-line description for logs and provenance.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} at {} ({} classes, {} images)",
            self.set,
            self.root.display(),
            self.num_classes(),
            self.len()
        );
        if let Some(subset) = &self.subset {
            s.push_str("; subset: ");
            s.push_str(&subset.describe());
        }
        s
    }

    /// Restricts the dataset to some classes and at most M images per class. Labels are
    /// renumbered to positions among the kept classes; the per-class choice depends only
    /// on `subset.seed`, the class name and the class's file list.
    pub fn subset(&self, subset: &Subset) -> Result<Dataset> {
        let kept: Vec<usize> = match &subset.classes {
            ClassSelection::All => (0..self.classes.len()).collect(),
            ClassSelection::First(n) => (0..self.classes.len().min(*n)).collect(),
            ClassSelection::Named(names) => {
                let mut kept = BTreeSet::new();
                for name in names {
                    let pos = self.classes.iter().position(|c| c == name).ok_or_else(|| {
                        DataError::UnknownClass {
                            class: name.clone(),
                            root: self.root.clone(),
                        }
                    })?;
                    kept.insert(pos);
                }
                kept.into_iter().collect()
            }
        };
        let mut samples = Vec::new();
        for (new_label, &old) in kept.iter().enumerate() {
            let mut files: Vec<&Sample> = self
                .samples
                .iter()
                .filter(|s| s.label as usize == old)
                .collect();
            if let Some(m) = subset.max_per_class {
                if files.len() > m {
                    let class_key = name_hash(&self.classes[old]);
                    let mut rng = SampleRng::new(subset.seed, Stream::Subset, 0, class_key);
                    rng.shuffle(&mut files);
                    files.truncate(m);
                    files.sort_by(|a, b| a.path.cmp(&b.path));
                }
            }
            samples.extend(files.into_iter().map(|s| Sample {
                path: s.path.clone(),
                label: new_label as u32,
            }));
        }
        Ok(Dataset {
            root: self.root.clone(),
            classes: kept.iter().map(|&i| self.classes[i].clone()).collect(),
            samples,
            set: self.set,
            subset: Some(subset.clone()),
            skipped: self.skipped,
        })
    }
}

/// FNV-1a hash of a class name, so a class's subset does not depend on its position.
fn name_hash(name: &str) -> u64 {
    crate::hashing::fnv1a64(name.as_bytes())
}

fn walk_error(root: &Path, e: walkdir::Error) -> DataError {
    let path = e.path().unwrap_or(root).to_path_buf();
    match e.into_io_error() {
        Some(io) => DataError::io(path, io),
        None => DataError::io(path, std::io::Error::other("filesystem loop")),
    }
}

fn scan_class(
    dir: &Path,
    label: u32,
    samples: &mut Vec<Sample>,
    skipped: &mut SkippedFiles,
) -> Result<()> {
    let walker = WalkDir::new(dir)
        .min_depth(1)
        .follow_links(true)
        .sort_by_file_name();
    let mut it = walker.into_iter();
    while let Some(entry) = it.next() {
        let entry = entry.map_err(|e| walk_error(dir, e))?;
        if is_hidden(entry.file_name()) {
            skipped.hidden += 1;
            if entry.file_type().is_dir() {
                it.skip_current_dir();
            }
        } else if entry.file_type().is_file() {
            if has_image_extension(entry.path()) {
                samples.push(Sample {
                    path: entry.into_path(),
                    label,
                });
            } else {
                skipped.other += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"x").unwrap();
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for f in [
            "b_cls/2.jpg",
            "b_cls/1.JPEG",
            "b_cls/notes.txt",
            "b_cls/.DS_Store",
        ] {
            touch(&r.join(f));
        }
        for f in [
            "a_cls/z.png",
            "a_cls/y.Jpg",
            "a_cls/sub/x.jpeg",
            "a_cls/.hidden/q.jpg",
        ] {
            touch(&r.join(f));
        }
        for f in ["c_cls/0.PNG", "README.md", ".git/config"] {
            touch(&r.join(f));
        }
        dir
    }

    #[test]
    fn classes_sorted_and_files_sorted() {
        let dir = tree();
        let ds = Dataset::image_folder(dir.path()).unwrap();
        assert_eq!(ds.classes, vec!["a_cls", "b_cls", "c_cls"]);
        let rel: Vec<(String, u32)> = ds
            .samples
            .iter()
            .map(|s| {
                (
                    s.path
                        .strip_prefix(dir.path())
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                    s.label,
                )
            })
            .collect();
        assert_eq!(
            rel,
            vec![
                ("a_cls/sub/x.jpeg".to_string(), 0),
                ("a_cls/y.Jpg".to_string(), 0),
                ("a_cls/z.png".to_string(), 0),
                ("b_cls/1.JPEG".to_string(), 1),
                ("b_cls/2.jpg".to_string(), 1),
                ("c_cls/0.PNG".to_string(), 2),
            ]
        );
        // .git and a_cls/.hidden and b_cls/.DS_Store are hidden; notes.txt and README.md other.
        assert_eq!(
            ds.skipped,
            SkippedFiles {
                hidden: 3,
                other: 2
            }
        );
        assert_eq!(ds.set, ImageSet::Folder);
    }

    #[test]
    fn missing_root_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("nope");
        let err = Dataset::image_folder(&root).unwrap_err();
        assert!(matches!(err, DataError::MissingRoot(_)));
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn root_without_images_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("readme.txt"));
        let err = Dataset::image_folder(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::NoImages(_)), "{err}");
        assert!(err.to_string().contains(&dir.path().display().to_string()));
    }

    #[test]
    fn empty_class_folder_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("a/1.jpg"));
        touch(&dir.path().join("empty_one/notes.txt"));
        let err = Dataset::image_folder(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::EmptyClass(_)), "{err}");
        assert!(err.to_string().contains("empty_one"), "{err}");
    }

    fn big_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for c in ["c0", "c1", "c2", "c3"] {
            for i in 0..10 {
                touch(&dir.path().join(format!("{c}/{i:02}.jpg")));
            }
        }
        dir
    }

    #[test]
    fn subset_first_n_classes_and_max_per_class() {
        let dir = big_tree();
        let ds = Dataset::image_folder(dir.path()).unwrap();
        let spec = Subset {
            classes: ClassSelection::First(2),
            max_per_class: Some(3),
            seed: 7,
        };
        let sub = ds.subset(&spec).unwrap();
        assert_eq!(sub.classes, vec!["c0", "c1"]);
        assert_eq!(sub.len(), 6);
        assert_eq!(sub.samples.iter().filter(|s| s.label == 1).count(), 3);
        // Deterministic for a seed, sorted within the class, and seed-dependent.
        let again = ds.subset(&spec).unwrap();
        assert_eq!(sub.samples, again.samples);
        assert!(sub
            .samples
            .windows(2)
            .all(|w| w[0].label < w[1].label || w[0].path < w[1].path));
        let differs = (0..20).any(|seed| {
            let other = ds
                .subset(&Subset {
                    seed,
                    ..spec.clone()
                })
                .unwrap();
            assert_eq!(other.len(), 6);
            other.samples != sub.samples
        });
        assert!(differs);
        assert!(sub
            .describe()
            .contains("first 2 classes, at most 3 images per class (seed 7)"));
    }

    #[test]
    fn subset_named_classes_renumbers_in_sorted_order() {
        let dir = big_tree();
        let ds = Dataset::image_folder(dir.path()).unwrap();
        let spec = Subset {
            classes: ClassSelection::Named(vec!["c3".into(), "c1".into()]),
            max_per_class: None,
            seed: 0,
        };
        let sub = ds.subset(&spec).unwrap();
        assert_eq!(sub.classes, vec!["c1", "c3"]);
        assert_eq!(sub.len(), 20);
        assert!(sub.samples[..10]
            .iter()
            .all(|s| s.label == 0 && s.path.starts_with(dir.path().join("c1"))));
        assert!(sub.samples[10..]
            .iter()
            .all(|s| s.label == 1 && s.path.starts_with(dir.path().join("c3"))));
        let bad = Subset {
            classes: ClassSelection::Named(vec!["zz".into()]),
            ..spec
        };
        assert!(matches!(
            ds.subset(&bad),
            Err(DataError::UnknownClass { .. })
        ));
    }
}
