//! The training and validation sets of a run, from its data configuration: generated
//! synthetic images, an ImageFolder tree, or the ILSVRC-2012 validation layouts, reduced to
//! the configured subset, with one class list shared by both.

use std::path::{Path, PathBuf};

use crate::data::{
    ilsvrc_val_flat, ilsvrc_val_folders, write_synthetic_dataset, ClassSelection, DataError,
    Dataset, Subset, ValLabels,
};
use crate::experiment::{DataConfig, EvalSet, SyntheticSpec, ValLayout};
use crate::store::RunLock;

/// The datasets of a run.
pub struct RunData {
    pub train: Dataset,
    pub val: Dataset,
}

/// Builds (or generates, for synthetic data, under `<results>/data/`) the datasets.
pub fn prepare_datasets(cfg: &DataConfig, results: &Path) -> Result<RunData, String> {
    let (train_root, val_root) = roots(cfg, results)?;
    let train = Dataset::image_folder(&train_root).map_err(|e| describe("data.train", e))?;
    let train = select(train, cfg, cfg.train_images_per_class)?;

    let blacklist = match cfg.eval_set {
        EvalSet::All => None,
        EvalSet::Nonblacklisted => {
            Some(PathBuf::from(cfg.blacklist.as_deref().ok_or(
                "data.eval_set is nonblacklisted but data.blacklist is not set",
            )?))
        }
    };
    let val = match cfg.val_layout {
        ValLayout::ImageFolder if blacklist.is_some() => {
            ilsvrc_val_folders(&val_root, blacklist.as_deref())
        }
        ValLayout::ImageFolder => Dataset::image_folder(&val_root),
        ValLayout::IlsvrcFlat => {
            let labels = match (&cfg.val_ground_truth, &cfg.val_wnids) {
                (Some(gt), _) => ValLabels::GroundTruth(gt.into()),
                (None, Some(w)) => ValLabels::PerImageWnids(w.into()),
                (None, None) => return Err(
                    "data.val_layout is ilsvrc_flat: set data.val_ground_truth or data.val_wnids"
                        .into(),
                ),
            };
            ilsvrc_val_flat(&val_root, &labels, blacklist.as_deref())
        }
    }
    .map_err(|e| describe("data.val", e))?;
    // The validation labels must index the training classes.
    let subset = Subset {
        classes: ClassSelection::Named(train.classes.clone()),
        max_per_class: cfg.val_images_per_class,
        seed: cfg.subset_seed,
    };
    let val = val
        .subset(&subset)
        .map_err(|e| describe("data.val (classes of the training set)", e))?;
    if val.classes != train.classes {
        return Err(format!(
            "data.val at {} does not hold the training classes",
            val_root.display()
        ));
    }
    if val.is_empty() {
        return Err(format!(
            "data.val at {} has no images of the training classes",
            val_root.display()
        ));
    }
    Ok(RunData { train, val })
}

/// Held-out images per class of a `train_holdout` split when the table does not say.
pub const HOLDOUT_PER_CLASS: usize = 200;

/// Images of the training folder that the run's training subset leaves out, `per_class` of
/// each class (seeded by `data.subset_seed`): an evaluation set disjoint from the training
/// images and from the validation folder.
pub fn train_holdout(
    cfg: &DataConfig,
    results: &Path,
    per_class: usize,
) -> Result<Dataset, String> {
    if cfg.train_images_per_class.is_none() {
        return Err("split: train_holdout needs data.train_images_per_class (with every training image used for training, none is held out)".into());
    }
    let (root, _) = roots(cfg, results)?;
    let full = Dataset::image_folder(&root).map_err(|e| describe("data.train", e))?;
    let used: std::collections::HashSet<PathBuf> =
        select(full.clone(), cfg, cfg.train_images_per_class)?
            .samples
            .into_iter()
            .map(|s| s.path)
            .collect();
    let mut left_out = select(full, cfg, None)?;
    left_out.samples.retain(|s| !used.contains(&s.path));
    let mut holdout = left_out
        .subset(&Subset {
            classes: ClassSelection::All,
            max_per_class: Some(per_class),
            seed: cfg.subset_seed,
        })
        .map_err(|e| describe("data.train (held-out images)", e))?;
    if holdout.is_empty() {
        return Err(format!(
            "split: train_holdout: every image under {} is used for training",
            root.display()
        ));
    }
    holdout.set = crate::data::ImageSet::TrainHoldout;
    Ok(holdout)
}

/// The training and validation folders: generated once for synthetic data, else as set.
fn roots(cfg: &DataConfig, results: &Path) -> Result<(PathBuf, PathBuf), String> {
    match &cfg.synthetic {
        Some(s) => ensure_synthetic(s, results),
        None => Ok((
            PathBuf::from(cfg.train.as_deref().ok_or("data.train is not set")?),
            PathBuf::from(cfg.val.as_deref().ok_or("data.val is not set")?),
        )),
    }
}

/// The run's classes (`data.classes`) of a scanned training folder, at most `max_per_class`
/// images of each (seeded by `data.subset_seed`).
fn select(
    train: Dataset,
    cfg: &DataConfig,
    max_per_class: Option<usize>,
) -> Result<Dataset, String> {
    if cfg.classes.is_none() && max_per_class.is_none() {
        return Ok(train);
    }
    let classes = cfg
        .classes
        .map(ClassSelection::First)
        .unwrap_or(ClassSelection::All);
    train
        .subset(&Subset {
            classes,
            max_per_class,
            seed: cfg.subset_seed,
        })
        .map_err(|e| describe("data.train", e))
}

fn describe(field: &str, e: DataError) -> String {
    format!("{field}: {e}")
}

/// Generates the synthetic train/val trees once per specification (under a lock, so two
/// runs never write them at the same time); returns their roots.
fn ensure_synthetic(s: &SyntheticSpec, results: &Path) -> Result<(PathBuf, PathBuf), String> {
    let key = format!(
        "synthetic-c{}-n{}-{}-s{}-{}px",
        s.classes, s.train_per_class, s.val_per_class, s.seed, s.image_size
    );
    let dir = results.join("data").join(key);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let _lock = RunLock::acquire_waiting(&dir, std::time::Duration::from_secs(600))
        .map_err(|e| e.to_string())?;
    let (train, val, done) = (dir.join("train"), dir.join("val"), dir.join("COMPLETE"));
    if !done.exists() {
        let size = (s.image_size, s.image_size);
        let classes = s.classes as u32;
        write_synthetic_dataset(&train, classes, s.train_per_class as u32, size, s.seed)
            .map_err(|e| e.to_string())?;
        // A different seed for validation: other images of the same classes.
        write_synthetic_dataset(
            &val,
            classes,
            s.val_per_class as u32,
            size,
            s.seed ^ 0x005E_ED0F_7A11,
        )
        .map_err(|e| e.to_string())?;
        crate::store::write_bytes(&done, b"").map_err(|e| e.to_string())?;
    }
    Ok((train, val))
}

/// The validation images of `repro eval`: `val/<class>/` folders or, with `labels`, the flat
/// ILSVRC-2012 layout; the devkit blacklist removed when `nonblacklisted`.
pub fn eval_dataset(
    dir: &Path,
    nonblacklisted: bool,
    blacklist: Option<&Path>,
    labels: Option<ValLabels>,
) -> Result<Dataset, String> {
    let blacklist = match (nonblacklisted, blacklist) {
        (true, None) => return Err("--eval-set nonblacklisted needs --blacklist FILE (the devkit's ILSVRC2012_validation_blacklist.txt)".into()),
        (true, Some(b)) => Some(b),
        (false, _) => None,
    };
    let dataset = match (labels, blacklist) {
        (Some(labels), b) => ilsvrc_val_flat(dir, &labels, b),
        (None, Some(b)) => ilsvrc_val_folders(dir, Some(b)),
        (None, None) => Dataset::image_folder(dir),
    };
    dataset.map_err(|e| format!("--data: {e}"))
}
