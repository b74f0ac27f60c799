//! The committed CIFAR-10 report (`reports/mini/`) names every run it shows by its
//! configuration hash. Loading the experiment files today must give the same hashes — a
//! setting added with its default must not enter them — or every one of those runs would
//! train again.

mod common;

use repro::experiment::{load_experiment, LoadOptions};

#[test]
fn the_mini_runs_keep_the_hashes_of_the_committed_report() {
    let mut checked = 0;
    for entry in std::fs::read_dir(common::repo("experiments/mini")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let page = common::repo(&format!("reports/mini/{name}/index.html"));
        let Ok(html) = std::fs::read_to_string(&page) else {
            continue; // runs.yaml defines runs for the others and has no page
        };
        let e = load_experiment(&path, &LoadOptions::default()).unwrap();
        for planned in repro::runner::plan(&e, std::path::Path::new("results")) {
            assert!(
                html.contains(&planned.run.hash),
                "{}: run `{}` now hashes to {}, which {} does not show",
                path.display(),
                planned.run.name,
                planned.run.hash,
                page.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} runs checked");
}

#[test]
fn the_ablation_shares_its_default_cells_with_the_mini_runs() {
    let load = |f: &str| load_experiment(&common::repo(f), &LoadOptions::default()).unwrap();
    let (ablation, fig23) = (
        load("experiments/mini/ablation.yaml"),
        load("experiments/mini/fig23.yaml"),
    );
    assert_eq!(
        ablation
            .runs
            .keys()
            .filter(|n| n.contains("_ablation/"))
            .count(),
        16
    );
    for (cell, run) in [
        (
            "inception_v4_ablation/init=tf_slim,clip_mode=global_norm/seed=0",
            "inception_v4",
        ),
        (
            "inception_v4_ablation/init=tf_slim,clip_mode=global_norm/seed=1",
            "inception_v4_seed1",
        ),
        (
            "inception_resnet_v2_ablation/init=tf_slim,clip_mode=global_norm/seed=1",
            "inception_resnet_v2_seed1",
        ),
    ] {
        assert_eq!(ablation.runs[cell].hash, fig23.runs[run].hash, "{cell}");
    }
    let pytorch = &ablation.runs["inception_v4_ablation/init=pytorch,clip_mode=global_norm/seed=0"];
    assert_ne!(pytorch.hash, fig23.runs["inception_v4"].hash);
}
