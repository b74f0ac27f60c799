use std::path::{Path, PathBuf};

use super::*;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("repro-spec-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const RUNS: &str = "\
defaults:
  data: {train: /data/train, val: /data/val}
  train: {epochs: 160, batch_size: 32}
runs:
  v4: {model: {arch: inception_v4}}
  irv2: {model: {arch: inception_resnet_v2}}
  irv2_s1: {extends: irv2, seed: 1}
profiles:
  smoke:
    every_run:
      model: {width: 0.125, image_size: 75}
      data: {synthetic: {classes: 3}}
      train: {epochs: 1, batch_size: 4}
";

const FIG: &str = "\
include: [runs.yaml]
title: Figure 23
figures:
  - {id: fig23, paper_figure: 23, metric: top1, runs: [v4, irv2]}
";

fn load(path: &Path, profile: Option<&str>, sets: &[&str]) -> Result<Experiment, SpecError> {
    let options = LoadOptions {
        profile: profile.map(String::from),
        overrides: sets.iter().map(|s| s.to_string()).collect(),
        world_size: 1,
    };
    load_experiment(path, &options)
}

#[test]
fn includes_defaults_extends_and_profiles_resolve() {
    let d = Dir::new("resolve");
    d.write("runs.yaml", RUNS);
    let fig = d.write("fig23.yaml", FIG);
    let e = load(&fig, None, &[]).unwrap();
    assert_eq!(e.name, "fig23");
    assert_eq!(e.runs.len(), 3);
    let v4 = &e.runs["v4"].config;
    assert_eq!(v4.train.epochs, 160.0);
    assert_eq!(v4.train.lr.base_lr, 0.045);
    assert_eq!(v4.model.width, 1.0);
    assert_eq!(e.runs["irv2_s1"].config.seed, 1);
    assert_eq!(
        e.runs["irv2_s1"].config.model.arch,
        crate::models::Arch::InceptionResnetV2
    );
    assert_ne!(e.runs["irv2_s1"].hash, e.runs["irv2"].hash);

    let smoke = load(&fig, Some("smoke"), &[]).unwrap();
    let s = &smoke.runs["v4"].config;
    assert_eq!(
        (
            s.model.width,
            s.model.image_size,
            s.model.num_classes,
            s.train.epochs
        ),
        (0.125, 75, 3, 1.0)
    );
    assert_ne!(smoke.runs["v4"].hash, e.runs["v4"].hash);
}

#[test]
fn the_hash_is_stable_and_follows_the_config() {
    let d = Dir::new("hash");
    d.write("runs.yaml", RUNS);
    let fig = d.write("fig23.yaml", FIG);
    let a = load(&fig, None, &[]).unwrap();
    let b = load(&fig, None, &[]).unwrap();
    assert_eq!(a.runs["v4"].hash, b.runs["v4"].hash);
    let c = load(&fig, None, &["train.lr.base_lr=0.01"]).unwrap();
    assert_ne!(a.runs["v4"].hash, c.runs["v4"].hash);
    assert_eq!(c.runs["irv2"].config.train.lr.base_lr, 0.01);
    // A document-level override of one run leaves the others alone.
    let d2 = load(&fig, None, &["runs.v4.train.epochs=3"]).unwrap();
    assert_eq!(d2.runs["v4"].config.train.epochs, 3.0);
    assert_eq!(d2.runs["irv2"].hash, a.runs["irv2"].hash);
}

#[test]
fn per_variable_clipping_is_hashed_and_the_default_is_not_written() {
    let d = Dir::new("clip-mode");
    d.write("runs.yaml", RUNS);
    let fig = d.write("fig23.yaml", FIG);
    let a = load(&fig, None, &[]).unwrap();
    let b = load(&fig, None, &["train.clip_mode=global_norm"]).unwrap();
    assert_eq!(a.runs["v4"].hash, b.runs["v4"].hash);
    let config = serde_yaml::to_string(&a.runs["v4"].config).unwrap();
    assert!(!config.contains("clip_mode"), "{config}");
    let c = load(&fig, None, &["train.clip_mode=per_variable"]).unwrap();
    assert_ne!(a.runs["v4"].hash, c.runs["v4"].hash);
    assert_eq!(
        c.runs["v4"].config.train.clip_mode,
        crate::train::ClipMode::PerVariable
    );
    let err = load(&fig, None, &["train.clip_mode=per_layer"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("per_layer") && err.contains("per_variable"),
        "{err}"
    );
}

#[test]
fn unknown_key_names_file_line_and_column() {
    let d = Dir::new("unknown");
    d.write("runs.yaml", RUNS);
    let fig = d.write(
        "fig.yaml",
        "include: [runs.yaml]\nruns:\n  v4:\n    model: {arch: inception_v4, widht: 0.5}\n",
    );
    let err = load(&fig, None, &[]).unwrap_err().to_string();
    let expected = format!(
        "{}:4:33: runs.v4.model: unknown field `widht`, expected one of `arch`, `num_classes`, `width`, `blocks`, `residual_scales`, `dropout`, `aux_head`, `image_size`, `avg_pool_padding`, `bn_eps`, `bn_momentum`, `init`",
        fig.display()
    );
    assert_eq!(err, expected);
}

#[test]
fn wrong_type_names_the_field_and_what_was_expected() {
    let d = Dir::new("type");
    let f = d.write("f.yaml", "defaults:\n  train:\n    epochs: many\n");
    let err = load(&f, None, &[]).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}:3:13: defaults.train.epochs: invalid type: string \"many\", expected f64",
            f.display()
        )
    );
}

#[test]
fn malformed_yaml_names_the_position() {
    let d = Dir::new("malformed");
    let f = d.write("f.yaml", "runs:\n  a: {model: [1, 2}\n");
    let err = load(&f, None, &[]).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}:2:", f.display())), "{err}");
}

#[test]
fn a_missing_include_names_both_files() {
    let d = Dir::new("include");
    let f = d.write("f.yaml", "include: [nope.yaml]\n");
    let err = load(&f, None, &[]).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: include `nope.yaml` not found (looked for {})",
            f.display(),
            d.0.join("nope.yaml").display()
        )
    );
}

#[test]
fn include_cycles_are_reported() {
    let d = Dir::new("cycle");
    d.write("a.yaml", "include: [b.yaml]\n");
    d.write("b.yaml", "include: [a.yaml]\n");
    let err = load(&d.0.join("a.yaml"), None, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("include cycle"), "{err}");
}

#[test]
fn env_substitution_and_a_missing_variable() {
    let d = Dir::new("env");
    let f = d.write(
        "f.yaml",
        "defaults:\n  data: {train: '${REPRO_TEST_ROOT_X:-/fallback}/train', val: '${REPRO_TEST_UNSET_Y}/val'}\nruns: {a: {model: {arch: inception_v3}}}\n",
    );
    let err = load(&f, None, &[]).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("{}: environment variable `REPRO_TEST_UNSET_Y` is not set (used in `defaults.data.val`; set it or write `${{REPRO_TEST_UNSET_Y:-default}}`)", f.display())
    );
}

#[test]
fn a_run_without_data_or_arch_is_an_error_naming_the_run() {
    let d = Dir::new("nodata");
    let f = d.write("f.yaml", "runs: {a: {model: {arch: inception_v3}}}\n");
    let err = load(&f, None, &[]).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: run `a`: data.train and data.val must be set (or data.synthetic)",
            f.display()
        )
    );
    let f = d.write(
        "g.yaml",
        "defaults: {data: {train: x, val: y}}\nruns: {a: {seed: 2}}\n",
    );
    let err = load(&f, None, &[]).unwrap_err().to_string();
    assert!(err.contains("run `a`: model.arch is not set"), "{err}");
}

#[test]
fn figures_must_name_defined_runs_and_profiles_must_exist() {
    let d = Dir::new("refs");
    d.write("runs.yaml", RUNS);
    let f = d.write(
        "f.yaml",
        "include: [runs.yaml]\nfigures: [{id: f, metric: top1, runs: [v3]}]\n",
    );
    let err = load(&f, None, &[]).unwrap_err().to_string();
    assert!(
        err.contains("figure `f` names run `v3`, which is not defined (runs: irv2, irv2_s1, v4)"),
        "{err}"
    );
    let fig = d.write("fig.yaml", FIG);
    let err = load(&fig, Some("fast"), &[]).unwrap_err().to_string();
    assert!(err.contains("no profile `fast` (profiles: smoke)"), "{err}");
}

#[test]
fn bad_overrides_say_why() {
    let d = Dir::new("sets");
    d.write("runs.yaml", RUNS);
    let fig = d.write("fig.yaml", FIG);
    assert_eq!(
        load(&fig, None, &["train.epochs"]).unwrap_err().to_string(),
        "--set train.epochs: expected key.path=value"
    );
    let err = load(&fig, None, &["train.epochs=[1"])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("--set train.epochs=[1: value is not YAML"),
        "{err}"
    );
    let err = load(&fig, None, &["train.epochs=abc"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("run `irv2`: train.epochs: invalid type: string \"abc\", expected f64"),
        "{err}"
    );
}

#[test]
fn claims_take_one_run_or_seeds_and_must_name_defined_runs_and_tables() {
    let d = Dir::new("claims");
    d.write("runs.yaml", RUNS);
    let ok = d.write(
        "claims.yaml",
        "include: [runs.yaml]
group: mini
tables:
  - {id: t1, crops: 1, rows: [{label: irv2, runs: [irv2, irv2_s1]}]}
  - {id: t144, crops: 144, images_per_class: 5, rows: [{label: irv2, runs: [irv2, irv2_s1]}]}
claims:
  - statement: faster
    check: {kind: residual_faster, residual: [irv2, irv2_s1], plain: v4, metric: top1}
  - statement: crops
    check: {kind: more_crops_lower_error, fewer: t1, more: t144, metric: top1}
  - statement: scaling
    check: {kind: residual_scaling, scaled: irv2, unscaled: [irv2_s1]}
",
    );
    let e = load(&ok, None, &[]).unwrap();
    assert_eq!(e.group.as_deref(), Some("mini"));
    assert_eq!(e.tables[1].images_per_class, Some(5));
    let runs: Vec<&String> = e.claims[0].check.runs();
    assert_eq!(runs, ["irv2", "irv2_s1", "v4"]);
    assert_eq!(e.claims[1].check.tables(), ["t1", "t144"]);
    assert!(!e.defines_runs_only());
    assert!(load(&d.0.join("runs.yaml"), None, &[])
        .unwrap()
        .defines_runs_only());

    let bad_run = d.write("bad_run.yaml", "include: [runs.yaml]\nclaims:\n  - {statement: s, check: {kind: residual_scaling, scaled: irv2, unscaled: [nope]}}\n");
    let err = load(&bad_run, None, &[]).unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
    let bad_label = d.write(
        "bad_label.yaml",
        "include: [runs.yaml]\nfigures:\n  - {id: f, metric: top1, runs: [v4], labels: {irv2: x}}\n",
    );
    let err = load(&bad_label, None, &[]).unwrap_err().to_string();
    assert!(err.contains("`labels` names run `irv2`"), "{err}");
    let bad_table = d.write("bad_table.yaml", "include: [runs.yaml]\nclaims:\n  - {statement: s, check: {kind: ensemble_lowers_error, ensembles: t5, singles: t4, metric: top1}}\n");
    let err = load(&bad_table, None, &[]).unwrap_err().to_string();
    assert!(
        err.contains("table `t5`") && err.contains("bad_table.yaml"),
        "{err}"
    );
}

#[test]
fn the_executor_section_merges_file_profile_and_overrides_and_leaves_hashes_alone() {
    let d = Dir::new("executor");
    d.write("runs.yaml", RUNS);
    let fig = d.write(
        "fig23.yaml",
        &format!(
            "{FIG}executor:\n  kind: slurm\n  slurm: {{partition: gpu, time: '2-00:00:00', gpus_per_node: 4}}\n\
             profiles:\n  smoke:\n    executor: {{kind: local, jobs: 2, slurm: {{partition: debug}}}}\n"
        ),
    );
    let plain = load(&fig, None, &[]).unwrap();
    assert_eq!(plain.executor.kind, Some(ExecutorKind::Slurm));
    assert_eq!(plain.executor.slurm.partition.as_deref(), Some("gpu"));
    assert_eq!(plain.executor.slurm.gpus_per_node, Some(4));
    let smoke = load(&fig, Some("smoke"), &[]).unwrap();
    assert_eq!(smoke.executor.kind, Some(ExecutorKind::Local));
    assert_eq!(smoke.executor.jobs, Some(2));
    assert_eq!(smoke.executor.slurm.partition.as_deref(), Some("debug"));
    assert_eq!(smoke.executor.slurm.time.as_deref(), Some("2-00:00:00"));
    let set = load(&fig, None, &["executor.slurm.qos=long"]).unwrap();
    assert_eq!(set.executor.slurm.qos.as_deref(), Some("long"));
    assert_eq!(set.runs["v4"].hash, plain.runs["v4"].hash);

    let bad = d.write(
        "bad.yaml",
        &format!("{FIG}executor:\n  slurm: {{partiton: gpu}}\n"),
    );
    let message = load(&bad, None, &[]).unwrap_err().to_string();
    assert!(message.contains("bad.yaml:"), "{message}");
    assert!(message.contains("unknown field `partiton`"), "{message}");
}

#[test]
fn executor_flags_merge_over_the_file_field_by_field() {
    let base: ExecutorSpec = serde_yaml::from_str(
        "kind: slurm\nslurm: {partition: a, time: '1:00:00', sbatch: [--x], setup: [module load cuda]}",
    )
    .unwrap();
    let over: ExecutorSpec =
        serde_yaml::from_str("jobs: 3\nslurm: {partition: b, sbatch: [--y, --z]}").unwrap();
    let merged = over.merged_over(&base);
    assert_eq!(merged.kind, Some(ExecutorKind::Slurm));
    assert_eq!(merged.jobs, Some(3));
    assert_eq!(merged.slurm.partition.as_deref(), Some("b"));
    assert_eq!(merged.slurm.time.as_deref(), Some("1:00:00"));
    assert_eq!(merged.slurm.sbatch, Some(vec!["--y".into(), "--z".into()]));
    assert_eq!(merged.slurm.setup, Some(vec!["module load cuda".into()]));
    assert_eq!(ExecutorSpec::default().merged_over(&base), base);
    assert_eq!(base.merged_over(&ExecutorSpec::default()), base);
}

#[test]
fn a_bad_value_in_an_included_file_names_that_file_and_line() {
    let d = Dir::new("included-value");
    d.write(
        "runs.yaml",
        "defaults:\n  data: {train: x, val: y}\nruns:\n  a:\n    model: {arch: inception_v4}\n    train: {batch_size: 8, epochs: -1}\n",
    );
    let f = d.write(
        "f.yaml",
        "include: [runs.yaml]\nfigures: [{id: f, metric: top1, runs: [a]}]\n",
    );
    let err = load(&f, None, &[]).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}:6: run `a`: train.epochs must be positive, got -1 (read by {})",
            d.0.join("runs.yaml").display(),
            f.display()
        )
    );
    // Set in the experiment file itself: that file, as before.
    let g = d.write(
        "g.yaml",
        "defaults: {data: {train: x, val: y}}\nruns: {a: {model: {arch: inception_v4}, train: {epochs: -2}}}\n",
    );
    let err = load(&g, None, &[]).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: run `a`: train.epochs must be positive, got -2",
            g.display()
        )
    );
}

const SWEPT: &str = "defaults: {data: {train: x, val: y}}\nruns:\n  v4:\n    model: {arch: inception_v4}\n    sweep:\n      model.init: [tf_slim, pytorch]\n      train.clip_mode: [global_norm, per_variable]\n    seeds: 2\nfigures: [{id: f, metric: top1, runs: [v4]}]\n";

#[test]
fn a_sweep_expands_to_named_runs_whose_hashes_ignore_the_writing_order() {
    let d = Dir::new("sweep");
    let f = d.write("f.yaml", SWEPT);
    let e = load(&f, None, &[]).unwrap();
    let names: Vec<&String> = e.runs.keys().collect();
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(e
        .runs
        .contains_key("v4/init=pytorch,clip_mode=per_variable/seed=1"));
    let run = &e.runs["v4/init=pytorch,clip_mode=per_variable/seed=1"];
    assert_eq!(run.config.model.init, crate::models::InitScheme::Pytorch);
    assert_eq!(run.config.seed, 1);
    assert_eq!(
        run.folder_name(),
        format!(
            "v4~init=pytorch,clip_mode=per_variable~seed=1-{}",
            &run.hash[..8]
        )
    );
    // The figure draws every run, each cell's seeds as one band.
    assert_eq!(e.figures[0].runs.len(), 8);
    assert_eq!(
        e.figures[0].labels["v4/init=pytorch,clip_mode=per_variable/seed=0"],
        "v4/init=pytorch,clip_mode=per_variable"
    );
    // Lists written in another order: the same runs with the same hashes.
    let g = d.write(
        "g.yaml",
        &SWEPT
            .replace(
                "      model.init: [tf_slim, pytorch]\n      train.clip_mode: [global_norm, per_variable]\n",
                "      train.clip_mode: [per_variable, global_norm]\n      model.init: [pytorch, tf_slim]\n",
            )
            .replace("seeds: 2", "seeds: [1, 0]"),
    );
    let reordered = load(&g, None, &[]).unwrap();
    let hashes = |e: &Experiment| {
        e.runs
            .iter()
            .map(|(n, r)| (n.clone(), r.hash.clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(hashes(&e), hashes(&reordered));
    // The default cell is the run without a sweep: the same hash.
    let plain = d.write(
        "plain.yaml",
        "defaults: {data: {train: x, val: y}}\nruns: {v4: {model: {arch: inception_v4}, seed: 0}}\nfigures: [{id: f, metric: top1, runs: [v4]}]\n",
    );
    let plain = load(&plain, None, &[]).unwrap();
    assert_eq!(
        plain.runs["v4"].hash,
        e.runs["v4/init=tf_slim,clip_mode=global_norm/seed=0"].hash
    );
}

#[test]
fn set_overrides_a_swept_value_and_bad_sweeps_name_their_line() {
    let d = Dir::new("sweep-errors");
    let f = d.write("f.yaml", SWEPT);
    let e = load(&f, None, &["train.clip_mode=per_variable"]).unwrap();
    let names: Vec<&String> = e.runs.keys().collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(e.runs.contains_key("v4/init=pytorch/seed=0"), "{names:?}");
    assert!(e
        .runs
        .values()
        .all(|r| r.config.train.clip_mode == crate::train::ClipMode::PerVariable));

    let bad = d.write(
        "bad.yaml",
        &SWEPT.replace("train.clip_mode:", "train.clip_mod:"),
    );
    let err = load(&bad, None, &[]).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}:7:7: run `v4`: sweep `train.clip_mod`: train: unknown field `clip_mod`",
            bad.display()
        )),
        "{err}"
    );
    let empty = d.write(
        "empty.yaml",
        &SWEPT.replace("[global_norm, per_variable]", "[]"),
    );
    let err = load(&empty, None, &[]).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}:7:7: run `v4`: sweep `train.clip_mode` lists no values",
            empty.display()
        )
    );
    let table = d.write(
        "table.yaml",
        &format!("{SWEPT}tables: [{{id: t, crops: 1, rows: [{{label: a, runs: [v4]}}]}}]\n"),
    );
    let err = load(&table, None, &[]).unwrap_err().to_string();
    assert!(
        err.contains("names the sweep `v4`, whose runs differ in more than their seeds; only figures draw whole sweeps, here name one of its cells (v4/init=pytorch,clip_mode=global_norm, v4/init=pytorch,clip_mode=per_variable, v4/init=tf_slim,clip_mode=global_norm, v4/init=tf_slim,clip_mode=per_variable)"),
        "{err}"
    );
}

#[test]
fn tables_and_claims_read_a_sweep_cell_or_a_seeds_sweep_as_its_seeds() {
    let d = Dir::new("sweep-cells");
    let text = format!(
        "{}tables: [{{id: t, crops: 1, rows: [{{label: a, runs: ['v4/init=pytorch,clip_mode=per_variable']}}]}}]\n\
         claims:\n  - statement: s\n    check: {{kind: residual_faster, metric: top1, residual: irv2, plain: 'v4/init=tf_slim,clip_mode=global_norm'}}\n",
        SWEPT.replace(
            "figures:",
            "  irv2: {model: {arch: inception_resnet_v2}, seeds: [3, 5]}\nfigures:"
        )
    );
    let e = load(&d.write("f.yaml", &text), None, &[]).unwrap();
    assert_eq!(
        e.tables[0].rows[0].runs,
        [
            "v4/init=pytorch,clip_mode=per_variable/seed=0",
            "v4/init=pytorch,clip_mode=per_variable/seed=1"
        ]
    );
    let ClaimCheck::ResidualFaster {
        residual, plain, ..
    } = &e.claims[0].check
    else {
        panic!("the claim's kind changed");
    };
    assert_eq!(residual.names(), ["irv2/seed=3", "irv2/seed=5"]);
    assert_eq!(
        plain.names(),
        [
            "v4/init=tf_slim,clip_mode=global_norm/seed=0",
            "v4/init=tf_slim,clip_mode=global_norm/seed=1"
        ]
    );
    // A cell that is not there is an unknown run.
    let err = load(
        &d.write(
            "g.yaml",
            &text.replace("clip_mode=per_variable']", "clip_mode=none']"),
        ),
        None,
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("names run `v4/init=pytorch,clip_mode=none`, which is not defined"),
        "{err}"
    );
}

#[test]
fn a_sweep_in_defaults_sweeps_every_run() {
    let d = Dir::new("sweep-defaults");
    let f = d.write(
        "f.yaml",
        "defaults:\n  data: {train: x, val: y}\n  sweep: {train.clip_mode: [global_norm, per_variable]}\n  seeds: 2\n\
         runs:\n  v4: {model: {arch: inception_v4}}\n  irv2: {model: {arch: inception_resnet_v2}, sweep: {model.init: [tf_slim, pytorch]}}\n",
    );
    let e = load(&f, None, &[]).unwrap();
    let names: Vec<&str> = e.runs.keys().map(String::as_str).collect();
    assert_eq!(names.len(), 4 + 8, "{names:?}");
    assert!(
        names.contains(&"v4/clip_mode=per_variable/seed=1"),
        "{names:?}"
    );
    // A run's own axes join the defaults' axes.
    assert!(
        names.contains(&"irv2/init=pytorch,clip_mode=global_norm/seed=0"),
        "{names:?}"
    );
}

#[test]
fn a_run_name_with_a_sweep_separator_is_refused_at_its_line() {
    let d = Dir::new("runname");
    d.write("runs.yaml", RUNS);
    for bad in ["v4=1", "v4,b", "v4/b", "v4~b"] {
        let f = d.write(
            "f.yaml",
            &format!("include: [runs.yaml]\nruns:\n  {bad}: {{extends: v4}}\n"),
        );
        let err = load(&f, None, &[]).unwrap_err().to_string();
        let c = bad.chars().nth(2).unwrap();
        assert!(
            err.starts_with(&format!(
                "{}:3:3: run `{bad}`: a run's name cannot hold `{c}`",
                f.display()
            )),
            "{err}"
        );
    }
}
