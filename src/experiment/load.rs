//! Reading an experiment: the file and its includes, `${VAR}` substitution, the selected
//! profile, `--set` overrides, and the resolution of every run into a complete, hashed
//! configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::error::{locate_setting, locate_text, SpecError};
use super::schema::*;
use super::sweep::{cells, take_sweep, Cell, SweepError};
use super::yaml::{deep_merge, set_path, substitute_env};
use crate::models::ModelConfig;

/// How to read an experiment.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// A profile of the file to apply (`smoke` for `--smoke`).
    pub profile: Option<String>,
    /// `key.path=value` overrides. Paths starting with `model.`, `data.`, `train.` or `seed`
    /// apply to every run, after the profile; others apply to the document.
    pub overrides: Vec<String>,
    /// Processes this command runs as (`mpirun -np N`): the runs' `train.replicas` when the
    /// file does not set it. 0 counts as 1.
    pub world_size: usize,
}

/// A run of the experiment, ready to train.
#[derive(Clone, Debug)]
pub struct ResolvedRun {
    pub name: String,
    pub config: RunConfig,
    pub hash: String,
}

impl ResolvedRun {
    /// `<name>-<first 8 hex digits>`: the run's folder under `results/runs/`.
    /// A sweep's run names hold `/`, which a folder name cannot: it becomes `~`.
    pub fn folder_name(&self) -> String {
        format!("{}-{}", self.name.replace('/', "~"), &self.hash[..8])
    }
}

/// Released weights of a table row, resolved: the network and data to evaluate them with.
#[derive(Clone, Debug)]
pub struct ReleasedRow {
    /// The model and data settings (training settings unused).
    pub config: RunConfig,
    pub weights: Vec<PathBuf>,
}

/// A loaded experiment.
#[derive(Clone, Debug)]
pub struct Experiment {
    pub path: PathBuf,
    pub name: String,
    /// Reports go to `reports/<group>/<name>/` when set.
    pub group: Option<String>,
    /// The environment variables the files refer to (`${VAR}`), for messages.
    pub env_vars: Vec<String>,
    pub title: String,
    pub description: String,
    pub profile: Option<String>,
    pub runs: BTreeMap<String, ResolvedRun>,
    pub figures: Vec<FigureSpec>,
    pub tables: Vec<TableSpec>,
    pub claims: Vec<ClaimSpec>,
    /// Rows of released weights, by (table index, row index).
    pub released: BTreeMap<(usize, usize), ReleasedRow>,
    /// The file and everything it included, in merge order.
    pub sources: Vec<PathBuf>,
    /// How the missing runs are trained (the file's, with the profile's merged over it).
    pub executor: ExecutorSpec,
}

impl Experiment {
    /// Whether the file only defines runs for others to include (no figure, table or claim).
    pub fn defines_runs_only(&self) -> bool {
        self.figures.is_empty() && self.tables.is_empty() && self.claims.is_empty()
    }

    /// `fig23 (experiments/fig23.yaml, profile smoke)`: how commands introduce it.
    pub fn heading(&self) -> String {
        let profile = self
            .profile
            .as_deref()
            .map(|p| format!(", profile {p}"))
            .unwrap_or_default();
        format!("{} ({}{profile})", self.name, self.path.display())
    }
}

/// Reads, merges, validates and resolves an experiment file.
pub fn load_experiment(path: &Path, options: &LoadOptions) -> Result<Experiment, SpecError> {
    let referenced = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let env = |name: &str| {
        referenced.borrow_mut().insert(name.to_string());
        std::env::var(name).ok()
    };
    let mut sources = Vec::new();
    let mut doc = read_merged(path, &mut Vec::new(), &mut sources, &env)?;

    let (every_run_sets, doc_sets) = parse_overrides(&options.overrides)?;
    for (key, value) in doc_sets {
        set_path(&mut doc, &key, value).map_err(|message| SpecError::Override {
            arg: key.clone(),
            message,
        })?;
    }
    let file: ExperimentFile = typed(&doc).map_err(|e| SpecError::Invalid {
        path: path.into(),
        message: format!("after merging includes and overrides: {e}"),
    })?;

    let profile = match &options.profile {
        Some(name) => match file.profiles.contains_key(name) {
            true => Some(name.clone()),
            false => {
                let known: Vec<&str> = file.profiles.keys().map(String::as_str).collect();
                return Err(SpecError::Invalid {
                    path: path.into(),
                    message: format!("no profile `{name}` (profiles: {})", known.join(", ")),
                });
            }
        },
        None => None,
    };

    let fixed: Vec<String> = every_run_sets.iter().map(|(k, _)| k.clone()).collect();
    let mut every_run = Value::Mapping(Default::default());
    for (key, value) in every_run_sets {
        set_path(&mut every_run, &key, value).map_err(|message| SpecError::Override {
            arg: key.clone(),
            message,
        })?;
    }
    let mut runs = BTreeMap::new();
    let mut sweeps: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for name in file.runs.keys() {
        check_run_name(name, &sources, path)?;
        let mut merged = merged_run(&doc, name, profile.as_deref(), &every_run, path)?;
        let sweep_error = |e: SweepError| sweep_error(&sources, path, name, e);
        let mut swept: Vec<String> = Vec::new();
        let cells = match take_sweep(&mut merged, &fixed).map_err(sweep_error)? {
            None => vec![Cell {
                name: name.clone(),
                label: name.clone(),
                settings: merged,
            }],
            Some(sweep) => {
                swept = sweep.axes.keys().cloned().collect();
                let cells = cells(name, &merged, &sweep).map_err(sweep_error)?;
                let names = cells
                    .iter()
                    .map(|c| (c.name.clone(), c.label.clone()))
                    .collect();
                sweeps.insert(name.clone(), names);
                cells
            }
        };
        for cell in cells {
            let run_error = |message: String| SpecError::Run {
                path: path.into(),
                run: cell.name.clone(),
                at: locate_setting(&sources, &message).filter(|(file, _)| file != path),
                message,
            };
            let spec: RunSpec = typed(&cell.settings).map_err(|message| {
                // A swept path the schema does not know: point at the sweep's line.
                match swept.iter().find(|k| {
                    let last = k.rsplit('.').next().unwrap_or(k);
                    message.contains(&format!("unknown field `{last}`"))
                }) {
                    Some(key) => sweep_error(SweepError {
                        key: key.clone(),
                        message: format!("sweep `{key}`: {message}"),
                    }),
                    None => run_error(message),
                }
            })?;
            let config = resolve_run(spec, options.world_size).map_err(run_error)?;
            let hash = config.hash();
            runs.insert(
                cell.name.clone(),
                ResolvedRun {
                    name: cell.name,
                    config,
                    hash,
                },
            );
        }
    }
    let mut file = file;
    expand_sweeps_in_figures(&mut file, &sweeps);
    expand_seed_groups(&mut file, &sweeps);
    check_references(&file, &runs, &sweeps, path)?;
    let executor = resolve_executor(&doc, profile.as_deref(), path)?;
    let released = resolve_released(&doc, &file, path)?;

    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Experiment {
        path: path.into(),
        name: file.name.clone().unwrap_or(stem),
        group: file.group.clone(),
        env_vars: referenced.into_inner().into_iter().collect(),
        title: file.title.clone().unwrap_or_default(),
        description: file.description.clone().unwrap_or_default(),
        profile,
        runs,
        figures: file.figures,
        tables: file.tables,
        claims: file.claims,
        released,
        sources,
        executor,
    })
}

/// The file's `executor:` with the profile's merged over it.
fn resolve_executor(
    doc: &Value,
    profile: Option<&str>,
    path: &Path,
) -> Result<ExecutorSpec, SpecError> {
    let mut merged = Value::Mapping(Default::default());
    let profile_part = profile.map_or(&Value::Null, |p| &doc["profiles"][p]["executor"]);
    for part in [&doc["executor"], profile_part] {
        if !part.is_null() {
            deep_merge(&mut merged, part);
        }
    }
    typed(&merged).map_err(|message| SpecError::Invalid {
        path: path.into(),
        message: format!("executor: {message}"),
    })
}

/// One file with its includes merged under it, validated on its own first so errors carry
/// the line and column.
fn read_merged(
    path: &Path,
    stack: &mut Vec<PathBuf>,
    sources: &mut Vec<PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, SpecError> {
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if stack.contains(&canonical) {
        let mut chain: Vec<String> = stack.iter().map(|p| p.display().to_string()).collect();
        chain.push(canonical.display().to_string());
        return Err(SpecError::IncludeCycle {
            path: path.into(),
            chain,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.into(),
        source,
    })?;
    let file: ExperimentFile = if text.trim().is_empty() {
        ExperimentFile::default()
    } else {
        serde_yaml::from_str(&text).map_err(|e| SpecError::from_yaml(path, e))?
    };
    let mut own: Value = serde_yaml::from_str(&text).map_err(|e| SpecError::from_yaml(path, e))?;
    if own.is_null() {
        own = Value::Mapping(Default::default());
    }
    substitute_env(&mut own, env).map_err(|(var, key)| SpecError::MissingEnv {
        path: path.into(),
        var,
        key,
    })?;
    if let Value::Mapping(map) = &mut own {
        map.remove("include");
    }

    stack.push(canonical);
    let mut merged = Value::Mapping(Default::default());
    let dir = path.parent().unwrap_or(Path::new("."));
    for include in &file.include {
        let resolved = dir.join(include);
        if !resolved.is_file() {
            return Err(SpecError::MissingInclude {
                path: path.into(),
                include: include.clone(),
                resolved,
            });
        }
        let included = read_merged(&resolved, stack, sources, env)?;
        deep_merge(&mut merged, &included);
    }
    stack.pop();
    deep_merge(&mut merged, &own);
    sources.push(path.to_path_buf());
    Ok(merged)
}

/// Splits `key=value` overrides into those for every run and those for the document.
#[allow(clippy::type_complexity)]
fn parse_overrides(
    overrides: &[String],
) -> Result<(Vec<(String, Value)>, Vec<(String, Value)>), SpecError> {
    let mut every_run = Vec::new();
    let mut document = Vec::new();
    for arg in overrides {
        let Some((key, raw)) = arg.split_once('=') else {
            return Err(SpecError::Override {
                arg: arg.clone(),
                message: "expected key.path=value".into(),
            });
        };
        let value: Value = serde_yaml::from_str(raw).map_err(|e| SpecError::Override {
            arg: arg.clone(),
            message: format!("value is not YAML: {e}"),
        })?;
        let key = key.trim().to_string();
        let first = key.split('.').next().unwrap_or_default();
        match first {
            "model" | "data" | "train" | "seed" => every_run.push((key, value)),
            _ => document.push((key, value)),
        }
    }
    Ok((every_run, document))
}

/// A figure that names a sweep draws each of its runs, the seeds of one grid cell as one band
/// (labelled by the cell unless the figure's `labels` says otherwise).
fn expand_sweeps_in_figures(
    file: &mut ExperimentFile,
    sweeps: &BTreeMap<String, Vec<(String, String)>>,
) {
    for figure in &mut file.figures {
        let mut expanded = Vec::new();
        for run in std::mem::take(&mut figure.runs) {
            match sweeps.get(&run) {
                None => expanded.push(run),
                Some(cells) => {
                    let given = figure.labels.remove(&run);
                    for (cell, label) in cells {
                        let label = given.clone().unwrap_or_else(|| label.clone());
                        figure.labels.entry(cell.clone()).or_insert(label);
                        expanded.push(cell.clone());
                    }
                }
            }
        }
        figure.runs = expanded;
    }
}

/// Table rows and claims read seeds of one configuration: where they name one cell of a sweep
/// (`v4/init=pytorch`, its seeds), or a sweep of seeds alone, the name becomes its runs. A
/// sweep of several cells stays as written, for [`check_references`] to refuse.
fn expand_seed_groups(file: &mut ExperimentFile, sweeps: &BTreeMap<String, Vec<(String, String)>>) {
    let seeds_of = |name: &String| -> Option<Vec<String>> {
        let cells: Vec<&(String, String)> = match sweeps.get(name) {
            Some(cells) if cells.iter().all(|(_, label)| label == &cells[0].1) => {
                cells.iter().collect()
            }
            Some(_) => return None,
            None => sweeps
                .values()
                .flatten()
                .filter(|(_, label)| label == name)
                .collect(),
        };
        (!cells.is_empty()).then(|| cells.iter().map(|(cell, _)| cell.clone()).collect())
    };
    let expand = |names: &[String]| -> Vec<String> {
        names
            .iter()
            .flat_map(|n| seeds_of(n).unwrap_or_else(|| vec![n.clone()]))
            .collect()
    };
    for row in file.tables.iter_mut().flat_map(|t| t.rows.iter_mut()) {
        row.runs = expand(&row.runs);
    }
    for list in file.claims.iter_mut().flat_map(|c| c.check.run_lists_mut()) {
        *list = match expand(list.names()).as_slice() {
            [one] => RunNames::One(one.clone()),
            many => RunNames::Many(many.to_vec()),
        };
    }
}

/// A sweep's error at the line of the path it is about.
fn sweep_error(sources: &[PathBuf], path: &Path, run: &str, e: SweepError) -> SpecError {
    match locate_text(sources, &format!("{}:", e.key)) {
        Some((file, line, column)) => SpecError::Parse {
            path: file,
            line,
            column,
            message: format!("run `{run}`: {}", e.message),
        },
        None => SpecError::Run {
            path: path.into(),
            run: run.into(),
            message: e.message,
            at: None,
        },
    }
}

/// A run's name as the file declares it holds none of the characters the names of a sweep's runs
/// and run folders are made of, so those names cannot collide with it and `--runs` can tell them
/// apart.
fn check_run_name(name: &str, sources: &[PathBuf], path: &Path) -> Result<(), SpecError> {
    let Some(c) = name.chars().find(|c| "/,=~".contains(*c)) else {
        return Ok(());
    };
    let message = format!(
        "run `{name}`: a run's name cannot hold `{c}` (a sweep names its runs with `/`, `,` and \
         `=`, and a run folder writes `/` as `~`)"
    );
    Err(match locate_text(sources, &format!("{name}:")) {
        Some((file, line, column)) => SpecError::Parse {
            path: file,
            line,
            column,
            message,
        },
        None => SpecError::Invalid {
            path: path.into(),
            message,
        },
    })
}

/// defaults ⊕ extended runs ⊕ the run ⊕ profile (every run, then this run) ⊕ every-run overrides.
fn merged_run(
    doc: &Value,
    name: &str,
    profile: Option<&str>,
    every_run: &Value,
    path: &Path,
) -> Result<Value, SpecError> {
    let runs = &doc["runs"];
    let mut chain = vec![name.to_string()];
    while let Some(parent) = runs[chain.last().expect("non-empty").as_str()]["extends"].as_str() {
        if chain.iter().any(|c| c == parent) {
            let message = format!(
                "`extends` forms a cycle: {} -> {parent}",
                chain.join(" -> ")
            );
            return Err(SpecError::Run {
                path: path.into(),
                run: name.into(),
                message,
                at: None,
            });
        }
        if runs[parent].is_null() {
            return Err(SpecError::Run {
                path: path.into(),
                run: name.into(),
                at: None,
                message: format!("extends unknown run `{parent}`"),
            });
        }
        chain.push(parent.to_string());
    }
    let mut merged = Value::Mapping(Default::default());
    // Absent layers index as null; they must not replace what is below them.
    let mut overlay = |layer: &Value| {
        if !layer.is_null() {
            deep_merge(&mut merged, layer)
        }
    };
    overlay(&doc["defaults"]);
    for run in chain.iter().rev() {
        overlay(&runs[run.as_str()]);
    }
    if let Some(p) = profile {
        overlay(&doc["profiles"][p]["every_run"]);
        overlay(&doc["profiles"][p]["runs"][name]);
    }
    overlay(every_run);
    if let Value::Mapping(map) = &mut merged {
        map.remove("extends");
        map.retain(|_, v| !v.is_null());
    }
    Ok(merged)
}

/// Fills every unset field with the paper's value.
fn resolve_run(spec: RunSpec, world_size: usize) -> Result<RunConfig, String> {
    let world_size = world_size.max(1);
    let m = spec.model;
    let arch = m.arch.ok_or("model.arch is not set (inception_v3, inception_v4, inception_resnet_v1, inception_resnet_v2)")?;
    let mut model = ModelConfig::new(arch);
    model.num_classes = m.num_classes.unwrap_or(model.num_classes);
    model.width = m.width.unwrap_or(model.width);
    model.blocks = m.blocks.or(model.blocks);
    model.residual_scales = m.residual_scales.or(model.residual_scales);
    model.dropout = m.dropout.unwrap_or(model.dropout);
    model.aux_head = m.aux_head.unwrap_or(model.aux_head);
    model.image_size = m.image_size.unwrap_or(model.image_size);
    model.avg_pool_padding = m.avg_pool_padding.or(model.avg_pool_padding);
    model.bn_eps = m.bn_eps.unwrap_or(model.bn_eps);
    model.bn_momentum = m.bn_momentum.unwrap_or(model.bn_momentum);
    model.init = m.init.unwrap_or(model.init);

    let d = spec.data;
    if let Some(s) = &d.synthetic {
        model.num_classes = s.classes;
    }
    let data = DataConfig {
        train: d.train,
        val: d.val,
        val_layout: d.val_layout.unwrap_or(ValLayout::ImageFolder),
        val_ground_truth: d.val_ground_truth,
        val_wnids: d.val_wnids,
        blacklist: d.blacklist,
        eval_set: d.eval_set.unwrap_or(EvalSet::All),
        classes: d.classes,
        train_images_per_class: d.train_images_per_class,
        val_images_per_class: d.val_images_per_class,
        subset_seed: d.subset_seed.unwrap_or(0),
        skip_bad_images: d.skip_bad_images.unwrap_or(false),
        synthetic: d.synthetic,
        color_distortion: d.color_distortion.unwrap_or(ColorMode::Fast),
        train_crop_area: d.train_crop_area.unwrap_or([0.05, 1.0]),
        eval_crop_fraction: d.eval_crop_fraction.unwrap_or(0.875),
        interpolation: d.interpolation.unwrap_or(InterpolationMode::Bilinear),
    };
    if data.synthetic.is_none() && (data.train.is_none() || data.val.is_none()) {
        return Err("data.train and data.val must be set (or data.synthetic)".into());
    }
    let [lo, hi] = data.train_crop_area;
    if !(0.0 < lo && lo <= hi && hi <= 1.0) {
        return Err(format!(
            "data.train_crop_area must satisfy 0 < min <= max <= 1, got [{lo}, {hi}]"
        ));
    }
    if let (Some(n), None) = (data.classes, &data.synthetic) {
        model.num_classes = n;
    }

    let t = spec.train;
    let d = TrainConfig::default();
    let train = TrainConfig {
        epochs: t.epochs.unwrap_or(d.epochs),
        batch_size: t.batch_size.unwrap_or(d.batch_size),
        eval_batch_size: t.eval_batch_size.unwrap_or(d.eval_batch_size),
        optimizer: t.optimizer.unwrap_or(d.optimizer),
        lr: t.lr.unwrap_or(d.lr),
        weight_decay: t.weight_decay.unwrap_or(d.weight_decay),
        clip_norm: t.clip_norm.unwrap_or(d.clip_norm),
        clip_mode: t.clip_mode.unwrap_or(d.clip_mode),
        label_smoothing: t.label_smoothing.unwrap_or(d.label_smoothing),
        aux_weight: t.aux_weight.unwrap_or(d.aux_weight),
        ema: t.ema.unwrap_or(d.ema),
        eval_every_epochs: t.eval_every_epochs.unwrap_or(d.eval_every_epochs),
        checkpoint_every_steps: t.checkpoint_every_steps.unwrap_or(d.checkpoint_every_steps),
        keep_checkpoints: t.keep_checkpoints.unwrap_or(d.keep_checkpoints),
        precision: t.precision.unwrap_or(d.precision),
        diagnostics: t.diagnostics.unwrap_or(d.diagnostics),
        accumulate: t.accumulate.unwrap_or(d.accumulate),
        replicas: t.replicas.unwrap_or(world_size),
    };
    if train.keep_checkpoints == 0 {
        return Err("train.keep_checkpoints must be at least 1".into());
    }
    if train.accumulate == 0 || train.replicas == 0 {
        return Err("train.accumulate and train.replicas must be at least 1".into());
    }
    train.lr.validate().map_err(|e| e.to_string())?;
    if !(train.epochs > 0.0 && train.epochs.is_finite()) {
        return Err(format!(
            "train.epochs must be positive, got {}",
            train.epochs
        ));
    }
    if train.batch_size == 0 || train.eval_batch_size == 0 {
        return Err("train.batch_size and train.eval_batch_size must be at least 1".into());
    }
    if train.eval_every_epochs.is_nan() || train.eval_every_epochs <= 0.0 {
        return Err(format!(
            "train.eval_every_epochs must be positive, got {}",
            train.eval_every_epochs
        ));
    }
    model.validate().map_err(|e| format!("model: {e}"))?;
    Ok(RunConfig {
        model,
        data,
        train,
        seed: spec.seed.unwrap_or(0),
    })
}

/// Each released row: `defaults` with the row's model over it, the crop fraction applied.
fn resolve_released(
    doc: &Value,
    file: &ExperimentFile,
    path: &Path,
) -> Result<BTreeMap<(usize, usize), ReleasedRow>, SpecError> {
    let mut out = BTreeMap::new();
    for (t, table) in file.tables.iter().enumerate() {
        for (r, row) in table.rows.iter().enumerate() {
            let Some(released) = &row.released else {
                continue;
            };
            let invalid = |message: String| SpecError::Invalid {
                path: path.into(),
                message: format!("table `{}` row `{}`: {message}", table.id, row.label),
            };
            let mut merged = Value::Mapping(Default::default());
            if !doc["defaults"].is_null() {
                deep_merge(&mut merged, &doc["defaults"]);
            }
            deep_merge(
                &mut merged,
                &serde_yaml::Value::Mapping(
                    [(
                        Value::String("model".into()),
                        doc["tables"][t]["rows"][r]["released"]["model"].clone(),
                    )]
                    .into_iter()
                    .collect(),
                ),
            );
            if let Value::Mapping(map) = &mut merged {
                map.retain(|_, v| !v.is_null());
            }
            let spec: RunSpec = typed(&merged).map_err(invalid)?;
            let mut config = resolve_run(spec, 1).map_err(invalid)?;
            let arch = config.model.arch;
            config.data.eval_crop_fraction =
                released.crop_fraction.unwrap_or(arch.eval_defaults().1);
            if released.weights.is_empty() {
                return Err(invalid("released.weights is empty".into()));
            }
            out.insert(
                (t, r),
                ReleasedRow {
                    config,
                    weights: released.weights.iter().map(PathBuf::from).collect(),
                },
            );
        }
    }
    Ok(out)
}

fn check_references(
    file: &ExperimentFile,
    runs: &BTreeMap<String, ResolvedRun>,
    sweeps: &BTreeMap<String, Vec<(String, String)>>,
    path: &Path,
) -> Result<(), SpecError> {
    let known = |r: &String| runs.contains_key(r);
    let unknown = |what: String, r: &String| match sweeps.get(r) {
        Some(cells) => SpecError::Invalid {
            path: path.into(),
            message: format!(
                "{what} names the sweep `{r}`, whose runs differ in more than their seeds; only \
                 figures draw whole sweeps, here name one of its cells ({})",
                cells
                    .iter()
                    .map(|(_, label)| label.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        None => SpecError::Invalid {
            path: path.into(),
            message: format!(
                "{what} names run `{r}`, which is not defined (runs: {})",
                runs.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        },
    };
    for f in &file.figures {
        if let Some(r) = f.runs.iter().find(|r| !known(r)) {
            return Err(unknown(format!("figure `{}`", f.id), r));
        }
        if let Some(r) = f.labels.keys().find(|r| !f.runs.contains(r)) {
            return Err(SpecError::Invalid {
                path: path.into(),
                message: format!(
                    "figure `{}`: `labels` names run `{r}`, which the figure does not draw",
                    f.id
                ),
            });
        }
    }
    for t in &file.tables {
        if ![1, 10, 12, 144].contains(&t.crops) {
            return Err(SpecError::Invalid {
                path: path.into(),
                message: format!(
                    "table `{}`: crops must be 1, 10, 12 or 144, got {}",
                    t.id, t.crops
                ),
            });
        }
        for row in &t.rows {
            if row.runs.is_empty() == row.released.is_none() {
                return Err(SpecError::Invalid {
                    path: path.into(),
                    message: format!(
                        "table `{}` row `{}`: give either `runs` or `released`",
                        t.id, row.label
                    ),
                });
            }
            if let Some(r) = row.runs.iter().find(|r| !known(r)) {
                return Err(unknown(format!("table `{}` row `{}`", t.id, row.label), r));
            }
        }
    }
    for c in &file.claims {
        if let Some(m) = c.check.metric().filter(|m| !m.is_error()) {
            return Err(SpecError::Invalid {
                path: path.into(),
                message: format!(
                    "a claim compares `{}`; claims compare errors: `top1` or `top5`",
                    m.key()
                ),
            });
        }
        if let Some(r) = c.check.runs().into_iter().find(|r| !known(r)) {
            return Err(unknown("a claim".into(), r));
        }
        if let Some(t) = c
            .check
            .tables()
            .into_iter()
            .find(|t| !file.tables.iter().any(|table| &table.id == *t))
        {
            return Err(SpecError::Invalid {
                path: path.into(),
                message: format!(
                    "a claim names table `{t}`, which this experiment does not define"
                ),
            });
        }
    }
    Ok(())
}

/// Deserialises a merged tree through its YAML text, so that errors carry the key path
/// (`train.epochs: invalid type ...`); the positions in that text mean nothing and are dropped.
fn typed<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, String> {
    let text = serde_yaml::to_string(value).map_err(|e| e.to_string())?;
    serde_yaml::from_str(&text).map_err(|e| super::error::strip_position(&e.to_string()))
}
