//! Watching runs while they train. TensorBoard's own reader (`EventAccumulator` from PyPI's
//! `tensorboard`, through tests/tensorboard_reader.py) reads the events repro writes —
//! during a run, after it, and after a resume from an earlier checkpoint; the report
//! rendered while a run trains shows the evaluations so far and marks the run unfinished;
//! `repro status` gives its step rate and time left, and `--watch` repeats itself.
//!
//! The reader needs a Python with tensorboard: `REPRO_TENSORBOARD_PYTHON` (default
//! `python3`). Without one the TensorBoard checks say that they are skipped, unless
//! `REPRO_REQUIRE_TENSORBOARD=1` (as in .ci/run, which installs tensorboard in a venv)
//! makes that a failure.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{output_text, repo, TempDir};
use repro::store::metrics::{read_metrics, MetricsRow};
use repro::watch::events::{record, scalars_event};
use repro::watch::{EvalPoint, RunObserver, RunStart, StepPoint, TensorBoardSink};

/// The Python that can import tensorboard, or `None` (said, or a failure in CI).
fn tensorboard_python() -> Option<String> {
    let python =
        std::env::var("REPRO_TENSORBOARD_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let imports = Command::new(&python)
        .args(["-c", "import tensorboard"])
        .output()
        .is_ok_and(|o| o.status.success());
    if imports {
        return Some(python);
    }
    let why = format!(
        "`{python}` cannot import tensorboard (python3 -m venv V && V/bin/pip install tensorboard, \
         then REPRO_TENSORBOARD_PYTHON=V/bin/python)"
    );
    if std::env::var_os("REPRO_REQUIRE_TENSORBOARD").is_some() {
        panic!("REPRO_REQUIRE_TENSORBOARD is set but {why}");
    }
    eprintln!("skipped: {why}");
    None
}

/// What TensorBoard's reader finds in a folder.
struct Events {
    scalars: HashMap<String, Vec<(u64, f64)>>,
    /// tag → (plugin, [(step, text)])
    texts: HashMap<String, (String, Vec<(u64, String)>)>,
}

fn read_events(python: &str, dir: &Path) -> Events {
    let out = Command::new(python)
        .arg(repo("tests/tensorboard_reader.py"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let scalars = v["scalars"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(tag, points)| {
            let points = points
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
                .collect();
            (tag.clone(), points)
        })
        .collect();
    let texts = v["texts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(tag, t)| {
            let values = t["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_u64().unwrap(), p[1].as_str().unwrap().to_string()))
                .collect();
            (
                tag.clone(),
                (t["plugin"].as_str().unwrap().to_string(), values),
            )
        })
        .collect();
    Events { scalars, texts }
}

fn steps(events: &Events, tag: &str) -> Vec<u64> {
    events
        .scalars
        .get(tag)
        .map_or(Vec::new(), |p| p.iter().map(|(s, _)| *s).collect())
}

fn row(step: u64, top1: f64) -> MetricsRow {
    MetricsRow {
        epoch: step as f64 / 10.0,
        step,
        images_seen: step * 8,
        lr: 0.01,
        train_loss: 1.5,
        top1_err: Some(top1),
        top5_err: Some(0.0),
        eval_images: 12,
        images_per_s: 400.0,
        wall_s: step as f64 / 50.0,
        pre_pool_zero_frac: None,
        pre_pool_dead_channel_frac: None,
    }
}

/// One session of a run writing its events: steps `from + 1..=to`, an evaluation every 10.
fn session(dir: &Path, from: u64, to: u64, top1: f64) -> TensorBoardSink {
    let sink =
        TensorBoardSink::create(dir, "v4", "seed: 0\nmodel: {arch: inception_v4}\n").unwrap();
    sink.started(&RunStart {
        step: from,
        total_steps: 50,
        eval_every_steps: 10,
    });
    for step in from + 1..=to {
        sink.stepped(&StepPoint {
            step,
            epoch: step as f64 / 10.0,
            loss: 1.5,
            lr: 0.01,
            grad_norm: 3.0,
        });
        if step % 10 == 0 {
            sink.evaluated(&EvalPoint {
                row: &row(step, top1),
                diagnostics: None,
            });
        }
    }
    sink
}

#[test]
fn tensorboard_reads_the_events_and_drops_what_a_resumed_run_trains_again() {
    let Some(python) = tensorboard_python() else {
        return;
    };
    let tmp = TempDir::new("tb-resume");
    // The first session evaluates at steps 10..40 and is killed in the middle of a record...
    drop(session(&tmp.0, 0, 40, 0.9));
    let first = repro::store::RunDir::new(&tmp.0).tensorboard_files();
    assert_eq!(first.len(), 1, "{first:?}");
    let torn = record(&scalars_event(0.0, 41, &[("eval/top1_error", 0.1)]));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&first[0])
        .unwrap();
    std::io::Write::write_all(&mut file, &torn[..torn.len() / 2]).unwrap();
    drop(file);
    // ... and the second resumes from the checkpoint at step 20.
    drop(session(&tmp.0, 20, 50, 0.5));
    let events = read_events(&python, &tmp.0);
    // Scalars are 32-bit floats in TensorBoard.
    let (old, new) = (f64::from(0.9f32), 0.5);
    assert_eq!(
        events.scalars["eval/top1_error"],
        [(10, old), (20, old), (30, new), (40, new), (50, new)]
    );
    assert_eq!(steps(&events, "train/epoch"), [10, 20, 30, 40, 50]);
    let (plugin, texts) = &events.texts["config"];
    assert_eq!(plugin, "text");
    assert!(
        texts
            .iter()
            .all(|(_, t)| t.contains("    model: {arch: inception_v4}")),
        "{texts:?}"
    );
}

fn repro_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_repro"));
    c.args(args).arg("--results").arg(dir.join("results"));
    c
}

/// The cells of the row of the figure's table for `network` (`Inception-v4`).
fn figure_row(html: &str, network: &str) -> Vec<String> {
    let start = html
        .find(&format!("<tr><td>{network}</td>"))
        .unwrap_or_else(|| panic!("no row for {network} in:\n{html}"));
    let row = &html[start..start + html[start..].find("</tr>").unwrap()];
    row.split("<td")
        .skip(1)
        .map(|cell| {
            let text = &cell[cell.find('>').unwrap() + 1..];
            text[..text.find("</td>").unwrap()].to_string()
        })
        .collect()
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: sends a signal to a child process this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}

#[test]
fn a_run_shows_its_evaluations_while_it_trains_in_the_report_tensorboard_and_status() {
    let tmp = TempDir::new("watch-run");
    let fig = repo("experiments/fig23.yaml");
    let fig = fig.to_str().unwrap();
    let flags = ["--smoke", "--set", "train.epochs=40"];
    let mut run_args = vec!["run", fig];
    run_args.extend(flags);
    run_args.extend(["--runs", "inception_v4", "--report-every", "0"]);
    let mut child = repro_cmd(&tmp.0, &run_args)
        .arg("--reports")
        .arg(tmp.0.join("reports"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let page = tmp.0.join("reports/fig23/index.html");
    let runs = tmp.0.join("results/runs");
    let run_dir = || {
        common::run_dirs(&tmp.0.join("results"))
            .into_iter()
            .find(|d| d.to_string_lossy().contains("inception_v4"))
    };
    // Paused once three evaluations are stored and the page shows the run training.
    let start = Instant::now();
    loop {
        let evaluated = run_dir()
            .and_then(|d| read_metrics(&d.join("metrics.parquet")).ok())
            .map_or(0, |rows| rows.len());
        let html = std::fs::read_to_string(&page).unwrap_or_default();
        if evaluated >= 3 && html.contains("training, step") {
            signal(child.id(), libc::SIGSTOP);
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was caught training"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no evaluation in 2 min"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let run_dir = run_dir().unwrap();
    let html = std::fs::read_to_string(&page).unwrap();
    let cells = figure_row(&html, "Inception-v4");
    let shown: usize = cells[3].parse().unwrap();
    assert!(
        cells[2].starts_with("training, step ") && cells[2].ends_with(" of 320"),
        "{cells:?}"
    );
    assert!((1..40).contains(&shown), "{cells:?}");
    assert!(html.contains("Runs are training.") && html.contains("http-equiv=\"refresh\""));
    let svg = std::fs::read_to_string(tmp.0.join("reports/fig23/figures/fig23.svg")).unwrap();
    assert!(
        svg.contains("seed 0: training, step"),
        "the legend marks the run"
    );

    let mut status_args = vec!["status", fig];
    status_args.extend(flags);
    let status = repro_cmd(&tmp.0, &status_args).output().unwrap();
    let text = output_text(&status);
    assert!(status.status.success(), "{text}");
    let line = text.lines().find(|l| l.contains("inception_v4 ")).unwrap();
    assert!(
        line.contains("training: pid ")
            && line.contains(" of 320 (")
            && line.contains("steps/s, about "),
        "{text}"
    );
    assert!(
        text.contains("inception_resnet_v2  not started; about "),
        "{text}"
    );
    assert!(text.contains("all runs: about "), "{text}");

    let python = tensorboard_python();
    if let Some(python) = &python {
        let events = read_events(python, &run_dir);
        let evaluated = steps(&events, "eval/top1_error");
        assert!(
            (1..40).contains(&evaluated.len()) && evaluated.len() >= shown,
            "{evaluated:?}, the report showed {shown}"
        );
        assert_eq!(events.texts["config"].0, "text");
    }

    signal(child.id(), libc::SIGCONT);
    assert!(child.wait().unwrap().success());
    let html = std::fs::read_to_string(&page).unwrap();
    let cells = figure_row(&html, "Inception-v4");
    assert_eq!(
        (cells[2].as_str(), cells[3].as_str()),
        ("done", "40"),
        "{cells:?}"
    );
    assert!(!html.contains("http-equiv=\"refresh\""));
    if let Some(python) = &python {
        let events = read_events(python, &run_dir);
        let every_epoch: Vec<u64> = (1..=40).map(|e| e * 8).collect();
        assert_eq!(steps(&events, "eval/top1_error"), every_epoch);
        assert!(!steps(&events, "train/loss").is_empty());
    }
    assert_eq!(runs.read_dir().unwrap().count(), 1);

    // --watch prints the status again and again until stopped.
    status_args.extend(["--watch", "1"]);
    let mut watch = repro_cmd(&tmp.0, &status_args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    watch.kill().unwrap();
    watch.wait().unwrap();
    let mut out = String::new();
    watch
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.matches("repro status at ").count() >= 2, "{out}");
    assert!(out.contains("inception_v4         done"), "{out}");
}
