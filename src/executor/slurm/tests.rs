//! The slurm executor's bookkeeping against a queue that never runs anything: when it
//! submits again, when it gives up, and what it says. (tests/executor_slurm.rs runs the real
//! thing.)

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::*;
use crate::experiment::{load_experiment, LoadOptions};

/// Every job leaves the queue at once, as a cancelled job would; `exit` is what each job's
/// script "wrote" as repro's exit status (none: killed before repro ended).
struct VanishingQueue {
    submitted: Rc<RefCell<Vec<PathBuf>>>,
    exit: Option<i32>,
}

impl Queue for VanishingQueue {
    fn submit(&self, script: &Path, _extra: &[String]) -> Result<String, String> {
        let mut s = self.submitted.borrow_mut();
        s.push(script.to_path_buf());
        let id = (100 + s.len()).to_string();
        if let Some(code) = self.exit {
            let dir = script.parent().unwrap();
            std::fs::write(dir.join(format!("slurm-{id}.exit")), format!("{code}\n")).unwrap();
            std::fs::write(
                dir.join(format!("slurm-{id}.out")),
                "error: the data folder is gone\n",
            )
            .unwrap();
        }
        Ok(id)
    }

    fn snapshot(&self) -> Result<BTreeMap<String, QueuedJob>, String> {
        Ok(BTreeMap::new())
    }

    fn final_state(&self, _id: &str) -> Option<String> {
        Some("CANCELLED, exit code 0:15".to_string())
    }
}

struct Tmp(PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn setup(tag: &str) -> (Tmp, Experiment, RunOptions) {
    setup_runs(tag, &["v4"])
}

fn setup_runs(tag: &str, names: &[&str]) -> (Tmp, Experiment, RunOptions) {
    let dir = std::env::temp_dir().join(format!("repro-slurm-unit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("exp.yaml");
    // A seed each: runs of one configuration would share one folder.
    let runs: String = names
        .iter()
        .enumerate()
        .map(|(seed, n)| {
            format!(
                "  {n}: {{model: {{arch: inception_v4, width: 0.125, image_size: 75}}, seed: {seed}, \
                 data: {{synthetic: {{classes: 3}}}}, train: {{epochs: 1, batch_size: 4}}}}\n"
            )
        })
        .collect();
    std::fs::write(
        &file,
        format!(
            "runs:\n{runs}figures:\n  - {{id: fig23, paper_figure: 23, metric: top1, runs: [{}]}}\n",
            names.join(", ")
        ),
    )
    .unwrap();
    let experiment = load_experiment(&file, &LoadOptions::default()).unwrap();
    let options = RunOptions::on_cpu(dir.join("results"));
    (Tmp(dir), experiment, options)
}

fn executor(options: &RunOptions, exit: Option<i32>) -> (SlurmExecutor, Rc<RefCell<Vec<PathBuf>>>) {
    let submitted = Rc::new(RefCell::new(Vec::new()));
    let command = JobCommand {
        exe: "/bin/false".into(),
        profile: None,
        overrides: vec![],
        results: options.results.clone(),
        reports: options.results.join("reports"),
        cwd: std::env::temp_dir(),
        report_every: None,
    };
    let spec = SlurmSpec {
        poll_seconds: Some(1),
        max_resubmits: Some(2),
        ..Default::default()
    };
    let queue = VanishingQueue {
        submitted: submitted.clone(),
        exit,
    };
    (
        SlurmExecutor::with_queue(&spec, options, command, true, Box::new(queue)),
        submitted,
    )
}

#[test]
fn a_job_that_keeps_vanishing_is_submitted_again_up_to_the_limit_then_reported() {
    let (_tmp, experiment, options) = setup("vanish");
    let (ex, submitted) = executor(&options, None);
    let results = ex.train(&experiment);
    assert_eq!(submitted.borrow().len(), 3, "the first job and two more");
    let (planned, result) = &results[0];
    let RunResult::Failed(f) = result else {
        panic!("expected a failure, got {result:?}");
    };
    assert!(!f.bad_input);
    assert!(
        f.message
            .starts_with("Slurm job 103 ended (CANCELLED, exit code 0:15)"),
        "{}",
        f.message
    );
    let record = JobRecord::read(&planned.dir).unwrap();
    assert_eq!(record.job_id, "103");
    assert_eq!(record.earlier_jobs, ["101", "102"]);
    let script = std::fs::read_to_string(planned.dir.join(SCRIPT)).unwrap();
    assert!(
        script.contains("--runs v4 --executor inline --no-report"),
        "{script}"
    );
}

#[test]
fn a_job_whose_repro_reported_bad_input_is_not_submitted_again() {
    let (_tmp, experiment, options) = setup("badinput");
    let (ex, submitted) = executor(&options, Some(2));
    let results = ex.train(&experiment);
    assert_eq!(submitted.borrow().len(), 1);
    let RunResult::Failed(f) = &results[0].1 else {
        panic!("expected a failure, got {:?}", results[0].1);
    };
    assert!(f.bad_input);
    assert!(
        f.message.contains("the data folder is gone"),
        "{}",
        f.message
    );
}

#[test]
fn without_waiting_the_run_is_reported_submitted_and_a_report_job_follows() {
    let (_tmp, experiment, options) = setup("nowait");
    let (mut ex, submitted) = executor(&options, None);
    ex.wait = false;
    let results = ex.train(&experiment);
    assert_eq!(
        results[0].1,
        RunResult::Queued {
            state: "submitted".into(),
            by: "Slurm job 101".into()
        }
    );
    let s = submitted.borrow();
    assert_eq!(s.len(), 2, "{s:?}");
    assert!(s[1].ends_with("jobs/exp-report.sh"), "{s:?}");
}

/// The second submission is refused, as a cluster's per-user limit would.
struct RefusesTheSecond(RefCell<usize>);

impl Queue for RefusesTheSecond {
    fn submit(&self, _script: &Path, _extra: &[String]) -> Result<String, String> {
        let mut n = self.0.borrow_mut();
        *n += 1;
        match *n {
            2 => Err("sbatch: error: QOSMaxSubmitJobPerUserLimit".into()),
            n => Ok((200 + n).to_string()),
        }
    }

    fn snapshot(&self) -> Result<BTreeMap<String, QueuedJob>, String> {
        Ok(BTreeMap::new())
    }

    fn final_state(&self, _id: &str) -> Option<String> {
        None
    }
}

#[test]
fn a_refused_submission_fails_its_run_only_and_the_submitted_one_is_recorded() {
    let (_tmp, experiment, options) = setup_runs("refused", &["a", "b"]);
    let (mut ex, _) = executor(&options, None);
    ex.queue = Box::new(RefusesTheSecond(RefCell::new(0)));
    ex.wait = false;
    let results = ex.train(&experiment);
    assert_eq!(results.len(), 2);
    assert_eq!(
        results[0].1,
        RunResult::Queued {
            state: "submitted".into(),
            by: "Slurm job 201".into()
        }
    );
    assert_eq!(JobRecord::read(&results[0].0.dir).unwrap().job_id, "201");
    let RunResult::Failed(f) = &results[1].1 else {
        panic!("expected a failure, got {:?}", results[1].1);
    };
    assert!(
        f.message.contains("QOSMaxSubmitJobPerUserLimit"),
        "{}",
        f.message
    );
    assert!(JobRecord::read(&results[1].0.dir).is_none());
}
