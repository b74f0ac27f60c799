//! The slurm executor against a real Slurm (`scripts/local-slurm.sh start`; `.ci/run` starts
//! one and runs these with `-- --ignored`). Without Slurm the default `cargo test` lists them
//! as ignored with the command that runs them, and an ignored run on a machine without
//! `sbatch` says it skips them (unless `REPRO_REQUIRE_SLURM=1`, as in CI, makes that a
//! failure). Jobs train with one compute thread (`RAYON_NUM_THREADS=1`, inherited through
//! sbatch's environment) so that their weights equal those of an inline run bit for bit.
//! The tests take turns: the one-node cluster has two CPUs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{output_text, repo, run_dirs, TempDir};

const IGNORED: &str = "needs a running Slurm: `scripts/local-slurm.sh install && scripts/local-slurm.sh start`, then `cargo test --release --test executor_slurm -- --ignored` (.ci/run does this)";

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Whether Slurm answers; otherwise the test says why it is skipped (or fails, in CI).
fn slurm_available() -> bool {
    let answers = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let why = match (answers("sbatch", &["--version"]), answers("sinfo", &["-h"])) {
        (false, _) => "`sbatch` cannot be run (Debian: scripts/local-slurm.sh install)",
        (true, false) => "Slurm does not answer `sinfo` (scripts/local-slurm.sh start, and export the SLURM_CONF it prints)",
        (true, true) => return true,
    };
    if std::env::var_os("REPRO_REQUIRE_SLURM").is_some() {
        panic!("REPRO_REQUIRE_SLURM is set but {why}");
    }
    eprintln!("skipped: {why}");
    false
}

/// `repro ARGS --results DIR/results --reports DIR/reports`, from `dir`, one thread.
fn repro(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_repro"));
    c.current_dir(dir)
        .env("RAYON_NUM_THREADS", "1")
        .args(args)
        .arg("--results")
        .arg(dir.join("results"));
    if args[0] == "run" {
        c.arg("--reports").arg(dir.join("reports"));
    }
    c
}

/// `repro run fig23 --smoke --executor slurm` with a one-second poll and one CPU per job.
fn slurm_run(dir: &Path, extra: &[&str]) -> Command {
    let fig = repo("experiments/fig23.yaml");
    let mut args = vec![
        "run",
        fig.to_str().unwrap(),
        "--smoke",
        "--executor",
        "slurm",
        "--cpus-per-task",
        "1",
        "--set",
        "executor.slurm.poll_seconds=1",
    ];
    args.extend_from_slice(extra);
    repro(dir, &args)
}

/// Every job id that any `job.json` under `dir` names, now or earlier.
fn job_ids(dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for run in run_dirs(&dir.join("results")) {
        if let Ok(text) = std::fs::read_to_string(run.join("job.json")) {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            for e in v["earlier_jobs"].as_array().unwrap() {
                ids.push(e.as_str().unwrap().to_string());
            }
            ids.push(v["job_id"].as_str().unwrap().to_string());
        }
    }
    ids
}

/// The job that makes fig23's tables and report, when one was submitted.
fn report_job(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("results/jobs/fig23-report.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    Some(v["job_id"].as_str()?.to_string())
}

/// A test's turn on the cluster (the tests take turns), or `None` when Slurm is absent.
fn take_turn() -> Option<Turn> {
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !slurm_available() {
        eprintln!("{IGNORED}");
        return None;
    }
    Some(Turn(guard))
}

struct Turn(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

impl Turn {
    fn folder(&self, tag: &str) -> JobFolder {
        let tmp = TempDir::new(tag);
        JobFolder(tmp.0.clone(), tmp)
    }
}

/// Starts a command with its output captured.
trait Piped {
    fn piped(&mut self) -> Child;
}

impl Piped for Command {
    fn piped(&mut self) -> Child {
        self.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// A temporary folder whose Slurm jobs are cancelled when the test ends, pass or fail, before
/// the folder is removed.
struct JobFolder(PathBuf, #[allow(dead_code)] TempDir);

impl Drop for JobFolder {
    fn drop(&mut self) {
        let mut ids = job_ids(&self.0);
        ids.extend(report_job(&self.0));
        if !ids.is_empty() {
            let _ = Command::new("scancel").args(&ids).output();
        }
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn finish(child: Child, timeout: Duration) -> Output {
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(timeout);
        let _ = Command::new("kill").arg(pid.to_string()).output();
    });
    let out = child.wait_with_output().unwrap();
    drop(watchdog);
    out
}

/// The text of every `slurm-*.out` of the run folder.
fn job_logs(run: &Path) -> String {
    let mut text = String::new();
    for e in std::fs::read_dir(run).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("slurm-") && name.ends_with(".out") {
            text.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
        }
    }
    text
}

/// The step of the last `step N` line of a job log, if any.
fn last_logged_step(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| l.split(" step ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

#[test]
#[ignore = "needs a running Slurm: `eval \"$(scripts/local-slurm.sh start)\"`, then `cargo test --release --test executor_slurm -- --ignored` (.ci/run does this)"]
fn smoke_run_on_slurm_matches_the_inline_run_and_a_rerun_submits_nothing() {
    let Some(turn) = take_turn() else {
        return;
    };
    let inline = TempDir::new("slurm-inline");
    let fig = repo("experiments/fig23.yaml");
    let o = repro(
        &inline.0,
        &["run", fig.to_str().unwrap(), "--smoke", "--threads", "1"],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));

    let tmp = turn.folder("slurm-smoke");
    let o = finish(slurm_run(&tmp.0, &[]).piped(), Duration::from_secs(300));
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert_eq!(text.matches("trained by Slurm job").count(), 2, "{text}");
    assert!(tmp.0.join("reports/fig23/index.html").is_file(), "{text}");
    let ours = run_dirs(&tmp.0.join("results"));
    let theirs = run_dirs(&inline.0.join("results"));
    assert_eq!(
        ours.iter()
            .map(|p| p.file_name().unwrap())
            .collect::<Vec<_>>(),
        theirs
            .iter()
            .map(|p| p.file_name().unwrap())
            .collect::<Vec<_>>(),
        "the same runs, by name and hash"
    );
    for (a, b) in ours.iter().zip(&theirs) {
        let script = std::fs::read_to_string(a.join("slurm.sh")).unwrap();
        assert!(script.contains("#SBATCH --signal=B:USR1@"), "{script}");
        assert!(
            std::fs::read(a.join("final.safetensors")).unwrap()
                == std::fs::read(b.join("final.safetensors")).unwrap(),
            "{} trained on Slurm differs from the inline run",
            a.display()
        );
        let log = job_logs(a);
        assert!(log.contains("repro: Slurm job"), "{log}");
    }

    let again = slurm_run(&tmp.0, &[]).output().unwrap();
    let text = output_text(&again);
    assert!(again.status.success(), "{text}");
    assert!(!text.contains("submitted as"), "{text}");
    assert_eq!(text.matches("already trained").count(), 2, "{text}");

    let status = repro(&tmp.0, &["status", fig.to_str().unwrap(), "--smoke"])
        .output()
        .unwrap();
    let text = output_text(&status);
    assert!(status.status.success(), "{text}");
    assert_eq!(text.matches("done").count(), 2, "{text}");
    assert_eq!(text.matches("ended (COMPLETED").count(), 2, "{text}");
}

#[test]
#[ignore = "needs a running Slurm: `eval \"$(scripts/local-slurm.sh start)\"`, then `cargo test --release --test executor_slurm -- --ignored` (.ci/run does this)"]
fn a_job_array_trains_one_run_per_task_at_most_n_at_once() {
    let Some(turn) = take_turn() else {
        return;
    };
    let tmp = turn.folder("slurm-array");
    let o = finish(
        slurm_run(&tmp.0, &["--array-parallelism", "1"]).piped(),
        Duration::from_secs(300),
    );
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    let ids = job_ids(&tmp.0);
    assert_eq!(ids.len(), 2, "{ids:?}");
    let array = ids[0].strip_suffix("_0").expect("task 0 of an array");
    assert_eq!(ids[1], format!("{array}_1"));
    for (run, id) in run_dirs(&tmp.0.join("results")).iter().zip(&ids) {
        assert!(run.join("DONE").is_file());
        let log = std::fs::read_to_string(run.join(format!("slurm-{id}.out"))).unwrap();
        assert!(log.contains(&format!("repro: Slurm job {id} ")), "{log}");
        assert!(
            text.contains(&format!("trained by Slurm job {id}")),
            "{text}"
        );
    }
    let scripts: Vec<String> = std::fs::read_dir(tmp.0.join("results/jobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(scripts.len(), 1);
    assert!(
        scripts[0].contains("#SBATCH --array=0-1%1"),
        "{}",
        scripts[0]
    );
}

#[test]
#[ignore = "needs a running Slurm: `eval \"$(scripts/local-slurm.sh start)\"`, then `cargo test --release --test executor_slurm -- --ignored` (.ci/run does this)"]
fn a_cancelled_job_is_submitted_again_and_resumes_from_its_checkpoint() {
    let Some(turn) = take_turn() else {
        return;
    };
    let tmp = turn.folder("slurm-scancel");
    let child = slurm_run(
        &tmp.0,
        &["--runs", "inception_v4", "--set", "train.epochs=150"],
    )
    .piped();
    wait_until(
        "the job to train 100 steps",
        Duration::from_secs(180),
        || {
            run_dirs(&tmp.0.join("results"))
                .first()
                .is_some_and(|d| last_logged_step(&job_logs(d)) >= 100)
        },
    );
    let first = job_ids(&tmp.0);
    assert_eq!(first.len(), 1, "{first:?}");
    let fig = repo("experiments/fig23.yaml");
    let status = repro(
        &tmp.0,
        &[
            "status",
            fig.to_str().unwrap(),
            "--smoke",
            "--set",
            "train.epochs=150",
        ],
    )
    .output()
    .unwrap();
    let st = output_text(&status);
    assert!(
        st.contains(&format!("Slurm job {}: running on ", first[0])) && st.contains(", at step "),
        "{st}"
    );
    let o = Command::new("scancel").arg(&first[0]).output().unwrap();
    assert!(o.status.success(), "{}", output_text(&o));

    let o = finish(child, Duration::from_secs(400));
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains(&format!("Slurm job {} ended (CANCELLED", first[0])),
        "{text}"
    );
    assert!(text.contains("submitted again as Slurm job"), "{text}");
    assert!(text.contains("trained by Slurm job"), "{text}");
    let ids = job_ids(&tmp.0);
    assert_eq!(ids.len(), 2, "one job, then one more: {ids:?}");
    let run = &run_dirs(&tmp.0.join("results"))[0];
    let second = std::fs::read_to_string(run.join(format!("slurm-{}.out", ids[1]))).unwrap();
    let resumed = second
        .lines()
        .find(|l| l.contains("resuming from"))
        .unwrap_or_else(|| panic!("the second job did not resume:\n{second}"));
    let step: u64 = resumed
        .split("step=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(step >= 100, "{resumed}");
    assert!(run.join("DONE").is_file());
}

#[test]
#[ignore = "needs a running Slurm: `eval \"$(scripts/local-slurm.sh start)\"`, then `cargo test --release --test executor_slurm -- --ignored` (.ci/run does this)"]
fn a_job_at_its_time_limit_checkpoints_requeues_itself_and_resumes() {
    let Some(turn) = take_turn() else {
        return;
    };
    let tmp = turn.folder("slurm-timelimit");
    // A two-minute limit with the signal due after 5 s: Slurm sends signals from a periodic
    // check (once every ~30 s), so it comes well before the limit, and long before this run's
    // 9,600 steps are done (~2 minutes on an idle 2-core machine). (With the signal due at
    // the limit itself, Slurm can end the job for its time limit first: then the waiting
    // repro resubmits it instead.)
    let child = slurm_run(
        &tmp.0,
        &[
            "--runs",
            "inception_v4",
            "--set",
            "train.epochs=1200",
            "--time",
            "2",
            "--set",
            "executor.slurm.signal_seconds=115",
        ],
    )
    .piped();
    wait_until(
        "the job to requeue itself",
        Duration::from_secs(240),
        || {
            run_dirs(&tmp.0.join("results"))
                .first()
                .is_some_and(|d| job_logs(d).contains("requeueing job"))
        },
    );
    let ids = job_ids(&tmp.0);
    assert_eq!(ids.len(), 1, "{ids:?}");
    // The log line comes just before the script's `scontrol requeue`: wait for the job to be
    // back in the queue, then let a second pass, since slurmd refuses to launch a job whose
    // credential is from the second its previous instance was revoked in ("Job credential
    // revoked": the job fails).
    wait_until(
        "the requeued job to be pending",
        Duration::from_secs(60),
        || {
            Command::new("squeue")
                .args(["-h", "-j", &ids[0], "-o", "%T"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PENDING")
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    // Slurm holds a requeued job back for two minutes, and would signal it again a minute
    // later: let it start now and finish.
    let o = Command::new("scontrol")
        .args([
            "update",
            &format!("JobId={}", ids[0]),
            "StartTime=now",
            "TimeLimit=10",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));

    let o = finish(child, Duration::from_secs(400));
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains(&format!("trained by Slurm job {}", ids[0])),
        "{text}"
    );
    assert_eq!(
        job_ids(&tmp.0),
        ids,
        "requeued under the same id, not submitted again"
    );
    let run = &run_dirs(&tmp.0.join("results"))[0];
    let log = job_logs(run);
    assert!(log.contains("(restart 1)"), "{log}");
    let resumed = log
        .lines()
        .find(|l| l.contains("resuming from"))
        .unwrap_or_else(|| panic!("the requeued job did not resume:\n{log}"));
    assert!(!resumed.contains("step=0 "), "{resumed}");
    assert!(run.join("DONE").is_file());
}

#[test]
#[ignore = "needs a running Slurm: `eval \"$(scripts/local-slurm.sh start)\"`, then `cargo test --release --test executor_slurm -- --ignored` (.ci/run does this)"]
fn two_processes_on_one_file_submit_each_run_once() {
    let Some(turn) = take_turn() else {
        return;
    };
    let tmp = turn.folder("slurm-twice");
    // Held jobs stay queued, so the second process must find them.
    let start = || slurm_run(&tmp.0, &["--no-wait", "--sbatch=--hold"]).piped();
    let (a, b) = (start(), start());
    let (a, b) = (
        finish(a, Duration::from_secs(60)),
        finish(b, Duration::from_secs(60)),
    );
    let text = format!("{}{}", output_text(&a), output_text(&b));
    assert!(a.status.success() && b.status.success(), "{text}");
    assert_eq!(text.matches("submitted as Slurm job").count(), 2, "{text}");
    let attached = text
        .lines()
        .filter(|l| l.contains("is already pending (JobHeldUser)") && !l.starts_with("fig23:"))
        .count();
    assert_eq!(attached, 2, "{text}");
    let ids = job_ids(&tmp.0);
    assert_eq!(ids.len(), 2, "{ids:?}");
    // One job for the tables and the report too, after both runs' jobs.
    let report = report_job(&tmp.0).expect("a report job");
    assert_eq!(
        text.matches(&format!(
            "the tables and the report: Slurm job {report}, once jobs"
        ))
        .count(),
        1,
        "{text}"
    );
    assert_eq!(
        text.matches(&format!(
            "the tables and the report: Slurm job {report} is already pending"
        ))
        .count(),
        1,
        "{text}"
    );

    let fig = repo("experiments/fig23.yaml");
    let status = repro(&tmp.0, &["status", fig.to_str().unwrap(), "--smoke"])
        .output()
        .unwrap();
    let st = output_text(&status);
    assert_eq!(st.matches("pending (JobHeldUser)").count(), 2, "{st}");

    let o = Command::new("scontrol")
        .arg("release")
        .args(&ids)
        .arg(&report)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let o = finish(slurm_run(&tmp.0, &[]).piped(), Duration::from_secs(300));
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert_eq!(text.matches("trained by Slurm job").count(), 2, "{text}");
    assert_eq!(job_ids(&tmp.0), ids, "no job submitted twice");
    wait_until("the report job to end", Duration::from_secs(300), || {
        Command::new("squeue")
            .args(["-h", "-j", &report])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim().is_empty())
    });
    let jobs = tmp.0.join("results/jobs");
    let exit = std::fs::read_to_string(jobs.join(format!("slurm-{report}.exit")))
        .unwrap_or_else(|e| panic!("the report job wrote no exit status: {e}"));
    let log = std::fs::read_to_string(jobs.join(format!("slurm-{report}.out"))).unwrap_or_default();
    assert_eq!(exit.trim(), "0", "{log}");
    assert!(log.contains("report: "), "{log}");
}

#[cfg(feature = "mpi")]
#[test]
#[ignore = "needs a running Slurm: `eval \"$(scripts/local-slurm.sh start)\"`, then `cargo test --release --features mpi --test executor_slurm -- --ignored` (.ci/run does this)"]
fn a_job_of_two_ranks_trains_the_run_as_two_replicas_like_one_process_accumulating_two() {
    let Some(turn) = take_turn() else {
        return;
    };
    let fig = repo("experiments/fig23.yaml");
    let fig = fig.to_str().unwrap();
    let single = TempDir::new("slurm-ranks-single");
    let o = repro(
        &single.0,
        &[
            "run",
            fig,
            "--smoke",
            "--runs",
            "inception_v4",
            "--threads",
            "1",
            "--set",
            "train.replicas=2",
        ],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));

    let tmp = turn.folder("slurm-ranks");
    let o = finish(
        slurm_run(
            &tmp.0,
            &[
                "--runs",
                "inception_v4",
                "--tasks-per-node",
                "2",
                "--set",
                "train.replicas=2",
                "--set",
                "executor.slurm.srun=srun --mpi=pmix",
            ],
        )
        .piped(),
        Duration::from_secs(300),
    );
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    let (ours, theirs) = (
        &run_dirs(&tmp.0.join("results"))[0],
        &run_dirs(&single.0.join("results"))[0],
    );
    assert_eq!(ours.file_name(), theirs.file_name());
    let log = job_logs(ours);
    assert!(
        log.contains("training on 2 processes, 2 replicas in all"),
        "{log}"
    );
    assert!(
        std::fs::read(ours.join("final.safetensors")).unwrap()
            == std::fs::read(theirs.join("final.safetensors")).unwrap(),
        "two ranks in a Slurm job differ from one process accumulating two micro-batches"
    );
}
