//! End-to-end tests: a smoke-sized experiment with metrics read back from Parquet, rendered
//! to disk and checked as a reader would (files, PNG, SVG, links, numbers).

use std::collections::BTreeSet;
use std::path::Path;

use super::*;
use crate::store::{read_metrics, write_metrics, GitInfo, MetricsRow, Provenance, RunStatus};

/// A smoke run's metrics: evaluation every quarter epoch for three epochs, error falling
/// from ~95 % at a rate set by `speed`.
fn smoke_rows(speed: f64, offset: f64) -> Vec<MetricsRow> {
    (1..=12)
        .map(|i| {
            let epoch = i as f64 * 0.25;
            let top1 = (0.97 - speed * epoch + offset).clamp(0.0, 1.0);
            MetricsRow {
                epoch,
                step: i * 50,
                images_seen: i * 50 * 32,
                lr: 0.045 * 0.94f64.powi((epoch / 2.0).floor() as i32),
                train_loss: 6.9 - epoch,
                top1_err: Some(top1),
                top5_err: Some(top1 * 0.8),
                eval_images: 500,
                images_per_s: 180.0 + (i % 3) as f64,
                wall_s: i as f64 * 40.0,
                pre_pool_zero_frac: None,
                pre_pool_dead_channel_frac: None,
            }
        })
        .collect()
}

fn provenance(seed: u64, status: RunStatus) -> Provenance {
    Provenance {
        config: serde_json::json!({"model": "inception_v4"}),
        seed,
        git: GitInfo {
            commit: "0123456789abcdef0123".to_string(),
            dirty: Some(false),
        },
        repro_version: "0.1.0".to_string(),
        device: "cpu".to_string(),
        dataset_manifest_hash: "ab".repeat(32),
        started_at: "2024-05-01T10:00:00Z".to_string(),
        ended_at: Some("2024-05-01T10:08:00Z".to_string()),
        status,
        skipped_images: vec![],
    }
}

/// Writes each run's metrics to Parquet and reads them back, as `repro report` will.
fn stored(dir: &Path, name: &str, rows: &[MetricsRow]) -> Vec<MetricsRow> {
    let path = dir.join(format!("{name}.parquet"));
    write_metrics(&path, rows).unwrap();
    read_metrics(&path).unwrap()
}

fn smoke_input(dir: &Path) -> ReportInput {
    let v4_1 = stored(dir, "v4-1", &smoke_rows(0.10, 0.0));
    let v4_2 = stored(dir, "v4-2", &smoke_rows(0.09, 0.01));
    let irv2 = stored(dir, "irv2-1", &smoke_rows(0.14, 0.0));
    let series = |network: &str, seed, rows: &Vec<MetricsRow>, status: &str| Series {
        network: network.to_string(),
        label: String::new(),
        seed,
        rows: rows.clone(),
        status: status.to_string(),
    };
    let all_series = vec![
        series("inception_v4", 1, &v4_1, "done"),
        series("inception_v4", 2, &v4_2, "done"),
        series("inception_resnet_v2", 1, &irv2, "done"),
    ];
    let run = |name: &str, seed, rows: &Vec<MetricsRow>| RunInfo {
        name: name.to_string(),
        network: name.split('-').next().unwrap_or_default().to_string(),
        hash: "3f2a9c".to_string(),
        config_yaml: "model: inception_v4\nbatch_size: 32\n".to_string(),
        provenance: Some(provenance(seed, RunStatus::Done)),
        status: String::new(),
        metrics: rows.clone(),
        lr_schedule: Vec::new(),
    };
    let eval = |top1: f64| EvalRecord {
        top1_err: top1,
        top5_err: top1 / 4.0,
        images: 500,
        crops: 12,
        crop_definition: "12 crops (shorter side 320, centre square)".to_string(),
        eval_set: "smoke-val".to_string(),
        models: vec!["run".to_string()],
        skipped: Vec::new(),
    };
    let paper = paper_table_values();
    let row = |label: &str, results: Vec<EvalRecord>| TableRow {
        results,
        ..paper.table_row("table3", label).unwrap()
    };
    ReportInput {
        experiment: "smoke".to_string(),
        title: "Smoke test <tiny>".to_string(),
        description: "Three epochs on a synthetic set & two networks.".to_string(),
        notice: Some("Smoke data: numbers mean <nothing>.".to_string()),
        paper_scale: false,
        figures: vec![
            FigureInput {
                id: "fig23".to_string(),
                title: None,
                paper_figure: Some(23),
                metric: Metric::Top1,
                overlay_paper: false,
                series: all_series.clone(),
            },
            FigureInput {
                id: "fig24".to_string(),
                title: None,
                paper_figure: Some(24),
                metric: Metric::Top5,
                overlay_paper: true,
                series: all_series,
            },
        ],
        tables: vec![TableInput {
            id: "table3".to_string(),
            title: "Table 3: 12-crop evaluation, single model".to_string(),
            rows: vec![
                row("resnet_151", vec![]),
                row("inception_v4", vec![eval(0.80), eval(0.82)]),
                row("inception_resnet_v2", vec![eval(0.75)]),
            ],
        }],
        runs: vec![
            run("inception_v4-seed1", 1, &v4_1),
            run("inception_v4-seed2", 2, &v4_2),
            run("inception_resnet_v2-seed1", 1, &irv2),
        ],
        deviations: vec!["Batch 32 on 1 replica instead of 20 replicas.".to_string()],
        claims: vec![residual_speeds_up_training(
            "inception_resnet_v2",
            std::slice::from_ref(&irv2),
            "inception_v4",
            &[v4_1.clone(), v4_2.clone()],
            Metric::Top1,
        )],
        command: "repro run experiments/smoke.yaml".to_string(),
        generated_at: "2024-05-01T11:00:00Z".to_string(),
        commit: "0123456789ab".to_string(),
        training: vec![],
    }
}

/// Checks that `text` is well-formed XML as far as element nesting goes, with `root` as
/// its outermost element.
fn assert_balanced_xml(text: &str, root: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        let end = start + rest[start..].find('>').expect("unclosed tag");
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        let name = |t: &str| t.split_whitespace().next().unwrap_or("").to_string();
        if let Some(closing) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(closing.trim()),
                "mismatched </{closing}>"
            );
        } else {
            if stack.is_empty() {
                roots += 1;
                assert_eq!(name(tag), root);
            }
            if !tag.ends_with('/') {
                stack.push(name(tag));
            }
        }
    }
    assert!(stack.is_empty(), "unclosed elements {stack:?}");
    assert_eq!(roots, 1);
}

/// The `href` and `src` values of an HTML page.
fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').unwrap();
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

/// Asserts that every link of the page at `page` is relative and resolves: files exist,
/// fragments name an `id` of the page.
fn assert_links_resolve(page: &Path) {
    let html = std::fs::read_to_string(page).unwrap();
    let ids: BTreeSet<String> = links(&html.replace(" id=\"", " src=\""))
        .into_iter()
        .collect();
    for link in links(&html) {
        assert!(!link.contains("://"), "{page:?} links outside: {link}");
        if let Some(fragment) = link.strip_prefix('#') {
            assert!(ids.contains(fragment), "{page:?}: no id {fragment}");
        } else {
            let target = page.parent().unwrap().join(&link);
            assert!(target.is_file(), "{page:?}: broken link {link}");
        }
    }
}

#[test]
fn a_smoke_experiment_renders_to_a_static_report() {
    let dir = tempfile::tempdir().unwrap();
    let input = smoke_input(dir.path());
    let reports = dir.path().join("reports");
    let out = reports.join("smoke");
    render_experiment(&input, &out).unwrap();
    // A file left by an earlier rendering is gone: the folder holds what the page shows.
    std::fs::write(out.join("figures/old-run-lr.png"), b"stale").unwrap();
    let rendered = render_experiment(&input, &out).unwrap();
    assert!(!out.join("figures/old-run-lr.png").exists());
    for name in [
        "figures/fig23.png",
        "figures/fig23.svg",
        "figures/fig24.svg",
        "figures/learning-rate.png",
        "figures/throughput.svg",
        "tables/table3.md",
        "tables/table3.html",
        "index.html",
    ] {
        assert!(out.join(name).is_file(), "missing {name}");
        assert!(
            rendered.files.contains(&out.join(name)),
            "not listed: {name}"
        );
    }
    // Two figures, the runs' two plots (PNG + SVG each), one table (Markdown + HTML), the page.
    assert_eq!(rendered.files.len(), 2 * 2 + 2 * 2 + 2 + 1);
    assert_eq!(rendered.index_html, out.join("index.html"));

    let png = image::open(out.join("figures/fig23.png")).unwrap();
    assert_eq!((png.width(), png.height()), (900, 600));
    for f in rendered
        .files
        .iter()
        .filter(|f| f.extension().unwrap() == "svg")
    {
        let svg = std::fs::read_to_string(f).unwrap();
        assert_balanced_xml(&svg, "svg");
    }
    let fig23 = std::fs::read_to_string(out.join("figures/fig23.svg")).unwrap();
    assert!(fig23.contains("\nError (top-1) %\n") && fig23.contains("\nEpoch\n"));
    assert!(fig23.contains("Inception-v4, mean of 2 seeds"));
    assert!(
        !fig23.contains("(digitised)"),
        "smoke scale: no overlay unless asked"
    );
    let fig24 = std::fs::read_to_string(out.join("figures/fig24.svg")).unwrap();
    assert!(
        fig24.contains("curves (digitised)"),
        "overlay was asked for"
    );

    let md = std::fs::read_to_string(out.join("tables/table3.md")).unwrap();
    assert!(md.contains("| Inception-v4 | 18.7 | 81.00 ± 1.41 | +62.30 | 4.2 | 20.25 ± 0.35 | +16.05 | paper all; ours smoke-val | 500 | paper 12; ours [1] | 2 |"), "{md}");
    assert!(md.contains("| ResNet-151 | 21.4 | not run |"), "{md}");

    let index = std::fs::read_to_string(&rendered.index_html).unwrap();
    assert!(index.contains("Smoke test &lt;tiny&gt;"));
    assert!(index.contains("synthetic set &amp; two"));
    assert!(
        index.contains("<p class=\"notice\">Smoke data: numbers mean &lt;nothing&gt;.</p>"),
        "the notice is shown, escaped"
    );
    assert!(
        index.contains("<span class=\"verdict supported\">supported</span>"),
        "{index}"
    );
    assert!(index.contains("Batch 32 on 1 replica"));
    assert!(!index.contains("<script"));

    render_index(
        &reports,
        &[
            IndexEntry {
                experiment: "smoke".to_string(),
                title: input.title.clone(),
                description: input.description.clone(),
                generated_at: input.generated_at.clone(),
                claims: input.claims.clone(),
            },
            IndexEntry {
                experiment: "fig23 full".to_string(),
                title: "Figure 23 at paper scale".to_string(),
                description: "not run yet".to_string(),
                generated_at: String::new(),
                claims: vec![],
            },
        ],
    )
    .unwrap();
    let top = std::fs::read_to_string(reports.join("index.html")).unwrap();
    assert!(top.contains("href=\"smoke/index.html\""));
    assert!(top.contains("(not rendered yet)"));
    assert_links_resolve(&reports.join("index.html"));
    assert_links_resolve(&out.join("index.html"));
    assert_links_resolve(&out.join("tables/table3.html"));
}

#[test]
fn a_report_rendered_while_a_run_trains_marks_it_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = smoke_input(dir.path());
    input.figures[0].series[2].status = "training, step 340 of 1,200".to_string();
    input.runs[2].status = "training, step 340 of 1,200".to_string();
    input.training = vec!["inception_resnet_v2-seed1: training, step 340 of 1,200".to_string()];
    let out = dir.path().join("live");
    // Another process's write in progress is left alone; one a killed process left is not.
    std::fs::create_dir_all(out.join("figures")).unwrap();
    let in_flight = out.join("figures/.tmp-fig23.png-999-0");
    std::fs::write(&in_flight, b"half").unwrap();
    let rendered = render_experiment(&input, &out).unwrap();
    assert!(in_flight.exists());
    let html = std::fs::read_to_string(&rendered.index_html).unwrap();
    assert!(
        html.contains("<meta http-equiv=\"refresh\" content=\"30\">"),
        "{html}"
    );
    assert!(html.contains("<b>Runs are training.</b> Rendered 2024-05-01T11:00:00Z"));
    assert!(html.contains("<li>inception_resnet_v2-seed1: training, step 340 of 1,200</li>"));
    assert!(html.contains("<td>training, step 340 of 1,200</td>"));
    let svg = std::fs::read_to_string(out.join("figures/fig23.svg")).unwrap();
    assert!(svg.contains("Inception-ResNet-v2 (seed 1: training, step 340 of 1,200)"));
    // Once nothing trains: no notice and no reloading.
    let finished = render_experiment(&smoke_input(dir.path()), &out).unwrap();
    let html = std::fs::read_to_string(&finished.index_html).unwrap();
    assert!(!html.contains("refresh") && !html.contains("Runs are training"));
}

#[test]
fn two_processes_rendering_one_report_at_once_never_fail_or_tear_it() {
    // Jobs of an executor render the experiment's report while their runs train.
    let dir = tempfile::tempdir().unwrap();
    let input = smoke_input(dir.path());
    let out = dir.path().join("shared");
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for _ in 0..10 {
                    render_experiment(&input, &out).unwrap();
                }
            });
        }
    });
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.ends_with("</html>\n"));
    let leftovers = walkdir::WalkDir::new(&out)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn rerendering_overwrites_in_place_without_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let input = smoke_input(dir.path());
    let out = dir.path().join("report");
    let first = render_experiment(&input, &out).unwrap();
    let second = render_experiment(&input, &out).unwrap();
    assert_eq!(first, second);
    let on_disk = walkdir::WalkDir::new(&out)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count();
    assert_eq!(on_disk, second.files.len());
}

#[test]
fn an_experiment_without_data_still_renders() {
    let dir = tempfile::tempdir().unwrap();
    let input = ReportInput {
        experiment: "empty".to_string(),
        title: "Nothing yet".to_string(),
        description: String::new(),
        notice: None,
        paper_scale: true,
        figures: vec![FigureInput {
            id: "fig26".to_string(),
            title: None,
            paper_figure: Some(26),
            metric: Metric::Top1,
            overlay_paper: false,
            series: vec![],
        }],
        tables: vec![],
        runs: vec![RunInfo {
            name: "pending".to_string(),
            network: "inception_v3".to_string(),
            hash: String::new(),
            config_yaml: String::new(),
            provenance: None,
            status: String::new(),
            metrics: vec![],
            lr_schedule: Vec::new(),
        }],
        deviations: vec![],
        claims: vec![],
        command: String::new(),
        generated_at: String::new(),
        commit: String::new(),
        training: vec![],
    };
    let out = dir.path().join("empty");
    let rendered = render_experiment(&input, &out).unwrap();
    assert_eq!(rendered.files.len(), 2 + 4 + 1);
    let svg = std::fs::read_to_string(out.join("figures/learning-rate.svg")).unwrap();
    assert!(svg.contains("no metrics yet"));
    let fig = std::fs::read_to_string(out.join("figures/fig26.svg")).unwrap();
    assert!(fig.contains("curves (digitised)"), "paper scale overlays");
    let top = render_index(dir.path(), &[]).unwrap();
    assert!(std::fs::read_to_string(&top)
        .unwrap()
        .contains("No experiment"));
    assert_links_resolve(&rendered.index_html);
}
