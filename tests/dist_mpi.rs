//! Data-parallel training through MPI, end to end with `mpirun` (built only with
//! `--features mpi`; `.ci/run` installs Open MPI and runs these). Each process runs one
//! thread: the matrix products then split their sums the same way in every process, so two
//! processes and one process accumulating two micro-batches agree bit for bit. (At other
//! thread counts the products round differently, and deep plain networks amplify such
//! differences chaotically from step to step; see the README's lockstep section.)
#[cfg(feature = "mpi")]
mod common;

#[cfg(not(feature = "mpi"))]
#[test]
#[ignore = "needs `--features mpi` and Open MPI: `cargo test --release --features mpi --test dist_mpi` (.ci/run installs it and runs this)"]
fn training_across_processes_needs_the_mpi_feature() {}

#[cfg(feature = "mpi")]
mod with_mpi {

    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use super::common::{self, output_text, repo, run_dirs, TempDir};

    /// Whether `mpirun` can be started; when it cannot, the test says so and is skipped.
    fn mpirun_available() -> bool {
        let found = Command::new("mpirun")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("skipped: `mpirun` is not on the PATH (Debian: apt-get install openmpi-bin)");
        }
        found
    }

    /// `repro run experiments/fig23.yaml --smoke ARGS` in `dir`, under `mpirun -np N` when
    /// `processes` > 0.
    fn repro_run(dir: &Path, processes: usize, args: &[&str]) -> Command {
        let mut c = if processes > 0 {
            let mut c = Command::new("mpirun");
            c.args(["--allow-run-as-root", "--oversubscribe", "-np"])
                .arg(processes.to_string())
                .args(["-x", "RAYON_NUM_THREADS"])
                .arg(env!("CARGO_BIN_EXE_repro"));
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_repro"))
        };
        c.env("RAYON_NUM_THREADS", "1")
            .arg("run")
            .arg(repo("experiments/fig23.yaml"))
            .arg("--smoke")
            .args(args)
            .arg("--results")
            .arg(dir.join("results"))
            .arg("--reports")
            .arg(dir.join("reports"));
        c
    }

    /// Every metric but the timings, and the final weights' bytes, of each run folder.
    fn outcome(results: &Path) -> Vec<(Vec<String>, Vec<u8>)> {
        run_dirs(results)
            .iter()
            .map(|d| {
                let rows = repro::store::read_metrics(&d.join("metrics.parquet")).unwrap();
                let metrics = rows
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {} {} {:?} {:?} {:?}",
                            r.step,
                            r.images_seen,
                            r.train_loss,
                            r.top1_err,
                            r.top5_err,
                            r.pre_pool_zero_frac
                        )
                    })
                    .collect();
                (metrics, std::fs::read(d.join("final.safetensors")).unwrap())
            })
            .collect()
    }

    #[test]
    fn two_processes_train_exactly_as_one_process_accumulating_two_micro_batches() {
        if !mpirun_available() {
            return;
        }
        let tmp = TempDir::new("mpi-equal");
        let (two, one) = (tmp.0.join("two"), tmp.0.join("one"));
        let out = repro_run(&two, 2, &[]).output().unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        let text = output_text(&out);
        assert_eq!(
            text.matches("  trained: 8 steps").count(),
            2,
            "rank 0 alone reports, 8 updates of 2 x 8 images each: {text}"
        );
        let out = repro_run(&one, 0, &["--set", "train.accumulate=2"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        let (a, b) = (outcome(&two.join("results")), outcome(&one.join("results")));
        assert_eq!(a.len(), 2);
        for ((metrics_a, weights_a), (metrics_b, weights_b)) in a.iter().zip(&b) {
            assert_eq!(metrics_a, metrics_b);
            assert!(weights_a == weights_b, "final weights differ");
        }
        // The two-process run is `train.replicas: 2`: one process resumes or reruns it as is.
        let plan = Command::new(env!("CARGO_BIN_EXE_repro"))
            .args([
                "plan",
                repo("experiments/fig23.yaml").to_str().unwrap(),
                "--smoke",
            ])
            .args(["--set", "train.replicas=2", "--results"])
            .arg(two.join("results"))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&plan.stdout)
                .matches(" done ")
                .count(),
            2,
            "{}",
            output_text(&plan)
        );
    }

    /// The pid of the `repro` process of MPI rank `rank` among the children of `parent`.
    fn rank_pid(parent: u32, rank: usize) -> Option<u32> {
        let children =
            std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
        children
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .map(|env| {
                        env.split(|b| *b == 0)
                            .any(|v| v == format!("OMPI_COMM_WORLD_RANK={rank}").as_bytes())
                    })
                    .unwrap_or(false)
            })
    }

    #[test]
    fn a_run_whose_rank_is_killed_stops_everywhere_and_resumes_on_two_or_one_process_to_the_same_result(
    ) {
        if !mpirun_available() {
            return;
        }
        let tmp = TempDir::new("mpi-kill");
        let slow = common::runs::SLOW_SMOKE;
        let reference = tmp.0.join("reference");
        let out = repro_run(&reference, 2, &slow).output().unwrap();
        assert!(out.status.success(), "{}", output_text(&out));

        let kill_rank_1 = |results: &Path| {
            let mut child = repro_run(results, 2, &slow)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut victim = None;
            common::runs::wait_for_checkpoint(&results.join("results/runs"), 3, || {
                victim = rank_pid(child.id(), 1);
                victim.is_some()
            });
            if let Some(pid) = victim {
                // SAFETY: sending SIGKILL to a process this test started.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
            assert!(victim.is_some(), "rank 1 never found while training");
            let killed_at = Instant::now();
            let status = child.wait().unwrap();
            let took = killed_at.elapsed();
            assert!(!status.success(), "the run cannot succeed without rank 1");
            assert!(
                took < Duration::from_secs(30),
                "the other rank hung for {took:?}"
            );
        };
        let killed = tmp.0.join("killed");
        kill_rank_1(&killed);
        let out = repro_run(&killed, 2, &slow).output().unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        assert!(
            output_text(&out).contains("resuming from"),
            "{}",
            output_text(&out)
        );
        assert_eq!(
            outcome(&killed.join("results")),
            outcome(&reference.join("results")),
            "the resumed run ends where the uninterrupted one did"
        );

        // The same run resumes on one process too: it is `train.replicas: 2`, and one process
        // then runs both micro-batches of every update.
        let alone = tmp.0.join("alone");
        kill_rank_1(&alone);
        let mut args = slow.to_vec();
        args.extend(["--set", "train.replicas=2"]);
        let out = repro_run(&alone, 0, &args).output().unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        assert!(
            output_text(&out).contains("resuming from"),
            "{}",
            output_text(&out)
        );
        assert_eq!(
            outcome(&alone.join("results")),
            outcome(&reference.join("results")),
            "resumed on one process, the run ends where the two-process one did"
        );
    }
}
