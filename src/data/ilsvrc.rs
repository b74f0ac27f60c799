//! The ILSVRC-2012 validation set in the layouts users have: a flat folder of
//! `ILSVRC2012_val_%08d.JPEG` with the devkit ground truth (or TF-slim's per-image WNID
//! file), or `val/<wnid>/` folders; optionally without the devkit blacklist.
//!
//! Class indices are positions in the alphabetically sorted WNIDs, the order of the
//! training folders (and of timm / torchvision models).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::error::{DataError, Result};
use super::source::{Dataset, ImageSet, Sample, SkippedFiles};

/// The devkit's ILSVRC2012 ID → WNID table, one `ID WNID` pair per line in ID order
/// (meta.mat's order, not alphabetical).
const ID_TO_WNID: &str = include_str!("ilsvrc2012_id_to_wnid.txt");

/// Number of ILSVRC-2012 classes.
pub const ILSVRC2012_CLASSES: usize = 1000;

/// The WNIDs in devkit ID order: element `i` is the WNID of ILSVRC2012 ID `i + 1`.
pub fn ilsvrc2012_wnids_by_id() -> Vec<&'static str> {
    ID_TO_WNID
        .lines()
        .map(|line| {
            line.split_whitespace()
                .nth(1)
                .expect("built-in table has two columns")
        })
        .collect()
}

/// The WNIDs sorted alphabetically: element `i` is the WNID of class index `i`.
pub fn ilsvrc2012_sorted_wnids() -> Vec<&'static str> {
    let mut wnids = ilsvrc2012_wnids_by_id();
    wnids.sort_unstable();
    wnids
}

/// Where the validation labels come from.
#[derive(Clone, Debug)]
pub enum ValLabels {
    /// The devkit's `ILSVRC2012_validation_ground_truth.txt`: one ILSVRC2012 ID (1–1000)
    /// per image, in image-number order.
    GroundTruth(PathBuf),
    /// A file with one WNID per image in image-number order (TF-slim's
    /// `imagenet_2012_validation_synset_labels.txt`).
    PerImageWnids(PathBuf),
}

/// The file name of validation image `number` (1-based).
pub fn val_file_name(number: u32) -> String {
    format!("ILSVRC2012_val_{number:08}.JPEG")
}

/// The image number in a name like `ILSVRC2012_val_00000042.JPEG` (any extension case).
pub fn val_image_number(file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix("ILSVRC2012_val_")?;
    let digits = rest.split('.').next()?;
    if digits.len() != 8 {
        return None;
    }
    digits.parse().ok()
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))
}

fn meta_error(path: &Path, line: usize, reason: String) -> DataError {
    DataError::Metadata {
        path: path.to_path_buf(),
        line,
        reason,
    }
}

/// Reads the devkit ground truth: one ILSVRC2012 ID (1–1000) per line; blank lines at the
/// end are ignored.
pub fn read_ground_truth(path: &Path) -> Result<Vec<u16>> {
    let text = read_text(path)?;
    let mut ids = Vec::new();
    for (i, line) in text.trim_end().lines().enumerate() {
        let id: u16 = line.trim().parse().map_err(|_| {
            meta_error(
                path,
                i + 1,
                format!("expected an ILSVRC2012 ID, got {line:?}"),
            )
        })?;
        if !(1..=ILSVRC2012_CLASSES as u16).contains(&id) {
            return Err(meta_error(
                path,
                i + 1,
                format!("ILSVRC2012 ID {id} outside 1..=1000"),
            ));
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Reads a per-image WNID file: one WNID per line, each one of the 1000 classes.
pub fn read_per_image_wnids(path: &Path) -> Result<Vec<String>> {
    let known: HashSet<&str> = ilsvrc2012_wnids_by_id().into_iter().collect();
    let text = read_text(path)?;
    let mut wnids = Vec::new();
    for (i, line) in text.trim_end().lines().enumerate() {
        let wnid = line.trim();
        if !known.contains(wnid) {
            return Err(meta_error(
                path,
                i + 1,
                format!("{wnid:?} is not an ILSVRC-2012 WNID"),
            ));
        }
        wnids.push(wnid.to_string());
    }
    Ok(wnids)
}

/// Reads the devkit blacklist: 1-based image numbers, one per line.
pub fn read_blacklist(path: &Path) -> Result<BTreeSet<u32>> {
    let text = read_text(path)?;
    let mut numbers = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let n: u32 = line.parse().map_err(|_| {
            meta_error(
                path,
                i + 1,
                format!("expected an image number, got {line:?}"),
            )
        })?;
        if n == 0 {
            return Err(meta_error(path, i + 1, "image numbers start at 1".into()));
        }
        numbers.insert(n);
    }
    Ok(numbers)
}

/// Class index (position among sorted WNIDs) of each image, from either label file.
fn labels_by_image(labels: &ValLabels) -> Result<Vec<u32>> {
    let sorted = ilsvrc2012_sorted_wnids();
    let index: HashMap<&str, u32> = sorted
        .iter()
        .enumerate()
        .map(|(i, w)| (*w, i as u32))
        .collect();
    match labels {
        ValLabels::GroundTruth(path) => {
            let by_id = ilsvrc2012_wnids_by_id();
            Ok(read_ground_truth(path)?
                .into_iter()
                .map(|id| index[by_id[id as usize - 1]])
                .collect())
        }
        ValLabels::PerImageWnids(path) => Ok(read_per_image_wnids(path)?
            .iter()
            .map(|w| index[w.as_str()])
            .collect()),
    }
}

fn set_for(blacklist: Option<&Path>) -> ImageSet {
    if blacklist.is_some() {
        ImageSet::IlsvrcValNonBlacklisted
    } else {
        ImageSet::IlsvrcVal
    }
}

/// The validation set as a flat folder of `ILSVRC2012_val_%08d.JPEG` files. The label
/// file fixes the number of images (image `n` is line `n`); every one must exist. With a
/// blacklist, the listed image numbers are left out (the paper's 48,238-image set).
pub fn ilsvrc_val_flat(
    images_dir: &Path,
    labels: &ValLabels,
    blacklist: Option<&Path>,
) -> Result<Dataset> {
    if !images_dir.is_dir() {
        return Err(DataError::MissingRoot(images_dir.to_path_buf()));
    }
    let labels = labels_by_image(labels)?;
    let excluded = blacklist
        .map(read_blacklist)
        .transpose()?
        .unwrap_or_default();
    let mut samples = Vec::with_capacity(labels.len());
    for (i, &label) in labels.iter().enumerate() {
        let number = i as u32 + 1;
        if excluded.contains(&number) {
            continue;
        }
        let path = images_dir.join(val_file_name(number));
        if !path.is_file() {
            return Err(DataError::Layout {
                path: path.clone(),
                reason: format!("validation image {number} listed in the labels is missing"),
            });
        }
        samples.push(Sample { path, label });
    }
    if samples.is_empty() {
        return Err(DataError::NoImages(images_dir.to_path_buf()));
    }
    Ok(Dataset {
        root: images_dir.to_path_buf(),
        classes: ilsvrc2012_sorted_wnids()
            .into_iter()
            .map(String::from)
            .collect(),
        samples,
        set: set_for(blacklist),
        subset: None,
        skipped: SkippedFiles::default(),
    })
}

/// The validation set as `val/<wnid>/ILSVRC2012_val_%08d.JPEG` folders. Labels index the
/// full sorted list of 1000 WNIDs even when some folders are absent; with a blacklist,
/// the image number is read from each file name.
pub fn ilsvrc_val_folders(root: &Path, blacklist: Option<&Path>) -> Result<Dataset> {
    let folder = Dataset::image_folder(root)?;
    let sorted = ilsvrc2012_sorted_wnids();
    let index: HashMap<&str, u32> = sorted
        .iter()
        .enumerate()
        .map(|(i, w)| (*w, i as u32))
        .collect();
    let excluded = blacklist
        .map(read_blacklist)
        .transpose()?
        .unwrap_or_default();
    let mut samples = Vec::with_capacity(folder.samples.len());
    for sample in &folder.samples {
        let wnid = &folder.classes[sample.label as usize];
        let label = *index.get(wnid.as_str()).ok_or_else(|| DataError::Layout {
            path: root.join(wnid),
            reason: format!("folder {wnid:?} is not an ILSVRC-2012 WNID"),
        })?;
        if !excluded.is_empty() {
            let name = sample
                .path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy();
            let number = val_image_number(&name).ok_or_else(|| DataError::Layout {
                path: sample.path.clone(),
                reason: "a blacklist needs file names ILSVRC2012_val_%08d.JPEG".into(),
            })?;
            if excluded.contains(&number) {
                continue;
            }
        }
        samples.push(Sample {
            path: sample.path.clone(),
            label,
        });
    }
    Ok(Dataset {
        root: root.to_path_buf(),
        classes: sorted.into_iter().map(String::from).collect(),
        samples,
        set: set_for(blacklist),
        subset: None,
        skipped: folder.skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn builtin_table_is_the_devkit_order() {
        let by_id = ilsvrc2012_wnids_by_id();
        assert_eq!(by_id.len(), 1000);
        assert_eq!(by_id[0], "n02119789"); // ID 1: kit fox
        assert_eq!(by_id[489], "n01751748"); // ID 490: sea snake (label of val image 1)
        assert_eq!(by_id[999], "n03255030"); // ID 1000: dumbbell
        let sorted = ilsvrc2012_sorted_wnids();
        assert_eq!(sorted[0], "n01440764"); // class 0: tench
        assert_eq!(sorted[999], "n15075141"); // class 999: toilet tissue
        assert_eq!(sorted.iter().collect::<BTreeSet<_>>().len(), 1000);
        for (i, line) in ID_TO_WNID.lines().enumerate() {
            assert!(
                line.starts_with(&format!("{} n", i + 1)),
                "line {}: {line}",
                i + 1
            );
        }
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(val_file_name(42), "ILSVRC2012_val_00000042.JPEG");
        assert_eq!(val_image_number("ILSVRC2012_val_00000042.JPEG"), Some(42));
        assert_eq!(
            val_image_number("ILSVRC2012_val_00050000.jpeg"),
            Some(50000)
        );
        assert_eq!(val_image_number("ILSVRC2012_val_42.JPEG"), None);
        assert_eq!(val_image_number("n01440764_1.JPEG"), None);
    }

    fn flat_layout(n: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("val");
        fs::create_dir(&images).unwrap();
        for i in 1..=n {
            fs::write(images.join(val_file_name(i)), b"x").unwrap();
        }
        // Val images 1..5 of the real set: IDs 490, 361, 171, 822, 297.
        fs::write(dir.path().join("gt.txt"), "490\n361\n171\n822\n297\n").unwrap();
        fs::write(
            dir.path().join("wnids.txt"),
            "n01751748\nn09193705\nn02105855\nn04263257\nn03125729\n",
        )
        .unwrap();
        fs::write(dir.path().join("blacklist.txt"), "2\n5\n").unwrap();
        dir
    }

    fn class_of(wnid: &str) -> u32 {
        ilsvrc2012_sorted_wnids()
            .iter()
            .position(|w| *w == wnid)
            .unwrap() as u32
    }

    #[test]
    fn ground_truth_and_wnid_file_agree() {
        let dir = flat_layout(5);
        let images = dir.path().join("val");
        let gt = ilsvrc_val_flat(
            &images,
            &ValLabels::GroundTruth(dir.path().join("gt.txt")),
            None,
        )
        .unwrap();
        let wn = ilsvrc_val_flat(
            &images,
            &ValLabels::PerImageWnids(dir.path().join("wnids.txt")),
            None,
        )
        .unwrap();
        assert_eq!(gt.samples, wn.samples);
        assert_eq!(gt.set, ImageSet::IlsvrcVal);
        assert_eq!(gt.num_classes(), 1000);
        assert_eq!(gt.samples[0].label, class_of("n01751748"));
        assert_eq!(gt.samples[0].label, 65);
        assert_eq!(
            gt.samples[3].path,
            images.join("ILSVRC2012_val_00000004.JPEG")
        );
        assert_eq!(gt.samples[3].label, class_of("n04263257"));
    }

    #[test]
    fn blacklist_removes_listed_images() {
        let dir = flat_layout(5);
        let ds = ilsvrc_val_flat(
            &dir.path().join("val"),
            &ValLabels::GroundTruth(dir.path().join("gt.txt")),
            Some(&dir.path().join("blacklist.txt")),
        )
        .unwrap();
        assert_eq!(ds.set, ImageSet::IlsvrcValNonBlacklisted);
        assert_eq!(ds.set.as_str(), "ilsvrc2012-val-non-blacklisted");
        let numbers: Vec<u32> = ds
            .samples
            .iter()
            .map(|s| val_image_number(&s.path.file_name().unwrap().to_string_lossy()).unwrap())
            .collect();
        assert_eq!(numbers, vec![1, 3, 4]);
        assert_eq!(ds.samples[1].label, class_of("n02105855"));
    }

    #[test]
    fn missing_image_and_bad_lines_are_errors() {
        let dir = flat_layout(4);
        let err = ilsvrc_val_flat(
            &dir.path().join("val"),
            &ValLabels::GroundTruth(dir.path().join("gt.txt")),
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("ILSVRC2012_val_00000005.JPEG"),
            "{err}"
        );
        fs::write(dir.path().join("bad.txt"), "1\n1001\n").unwrap();
        let err = read_ground_truth(&dir.path().join("bad.txt")).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        fs::write(dir.path().join("bad_wnid.txt"), "n01751748\nn99999999\n").unwrap();
        assert!(read_per_image_wnids(&dir.path().join("bad_wnid.txt")).is_err());
        fs::write(dir.path().join("bad_bl.txt"), "3\nabc\n").unwrap();
        assert!(read_blacklist(&dir.path().join("bad_bl.txt")).is_err());
    }

    #[test]
    fn wnid_folders_use_the_full_class_list_and_the_blacklist() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("val");
        for (n, wnid) in [(1, "n01751748"), (2, "n09193705"), (3, "n01751748")] {
            fs::create_dir_all(root.join(wnid)).unwrap();
            fs::write(root.join(wnid).join(val_file_name(n)), b"x").unwrap();
        }
        fs::write(dir.path().join("bl.txt"), "3\n").unwrap();
        let ds = ilsvrc_val_folders(&root, Some(&dir.path().join("bl.txt"))).unwrap();
        assert_eq!(ds.num_classes(), 1000);
        assert_eq!(ds.set, ImageSet::IlsvrcValNonBlacklisted);
        let labels: Vec<u32> = ds.samples.iter().map(|s| s.label).collect();
        assert_eq!(labels, vec![class_of("n01751748"), class_of("n09193705")]);
        let all = ilsvrc_val_folders(&root, None).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all.set, ImageSet::IlsvrcVal);
        fs::create_dir_all(root.join("not_a_wnid")).unwrap();
        fs::write(root.join("not_a_wnid/a.jpg"), b"x").unwrap();
        let err = ilsvrc_val_folders(&root, None).unwrap_err();
        assert!(err.to_string().contains("not_a_wnid"), "{err}");
    }
}
