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
