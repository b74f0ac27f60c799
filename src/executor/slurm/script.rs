//! The batch script of one run's Slurm job, written into the run folder as `slurm.sh`.
//!
//! The job asks for SIGUSR1 `signal_seconds` before its time limit, to its batch shell only
//! (`B:`), which hands it to `repro`: the run checkpoints and exits with status 3, and the
//! script requeues the job (`scontrol requeue`, same job id), which resumes from the
//! checkpoint. `scancel` sends SIGTERM to every process of the job: `repro` checkpoints and
//! exits, and the script dies with the signal, so the job ends cancelled and the waiting
//! `repro run` resubmits it. The script writes `repro`'s exit status to `slurm-<id>.exit`
//! for when the cluster keeps no accounting.
//!
//! A job array (`executor.slurm.array_parallelism`) trains several runs, one per task: the
//! task picks its run and run folder by `SLURM_ARRAY_TASK_ID` and writes its log and exit
//! status there as `slurm-<array id>_<task>.out` / `.exit`, the id `squeue` shows for it.

use super::super::command::{shell_line, shell_quote};
use super::settings::Settings;

/// What the script runs, and where.
pub struct ScriptInput<'a> {
    /// `repro-<experiment>-<run>`.
    pub job_name: &'a str,
    /// Where the job's log and exit status go (absolute): the run folder.
    pub log_dir: &'a std::path::Path,
    /// Whether the job starts `repro` as the run's data-parallel ranks (through `srun`).
    pub ranks: bool,
    pub cwd: &'a std::path::Path,
    /// The `repro run … --runs NAME` command line, program first.
    pub argv: &'a [String],
    /// One line saying what the job is for, as a comment.
    pub about: &'a str,
    /// A job array: `argv` names the run [`ARRAY_RUN`], which each task replaces.
    pub array: Option<ArrayTasks<'a>>,
}

/// The tasks of a job array.
#[derive(Clone, Copy)]
pub struct ArrayTasks<'a> {
    /// Each task's run name and run folder (absolute), by task index.
    pub runs: &'a [(String, std::path::PathBuf)],
    /// At most this many tasks at once.
    pub at_once: Option<u32>,
}

/// The run name `argv` carries in a job array; each task puts its own in its place.
pub const ARRAY_RUN: &str = "REPRO_ARRAY_TASK_RUN";

/// The `#SBATCH` options of a job (without the `#SBATCH` prefix).
pub fn sbatch_options(settings: &Settings, input: &ScriptInput) -> Vec<String> {
    let s = &settings.spec;
    let output = match input.array {
        None => "slurm-%j.out",
        Some(_) => "slurm-%A_%a.out",
    };
    let mut o = vec![
        format!("--job-name={}", input.job_name),
        format!("--output={}/{output}", input.log_dir.display()),
        "--open-mode=append".to_string(),
        "--requeue".to_string(),
        format!("--signal=B:USR1@{}", settings.signal_seconds),
    ];
    let mut push = |name: &str, value: &Option<String>| {
        if let Some(v) = value {
            o.push(format!("--{name}={v}"));
        }
    };
    push(
        "array",
        &input.array.map(|a| {
            let throttle = a.at_once.map(|p| format!("%{p}")).unwrap_or_default();
            format!("0-{}{throttle}", a.runs.len().saturating_sub(1))
        }),
    );
    push("partition", &s.partition);
    push("account", &s.account);
    push("qos", &s.qos);
    push("time", &s.time);
    push("mem", &s.mem);
    push("nodes", &s.nodes.map(|n| n.to_string()));
    push("ntasks-per-node", &s.tasks_per_node.map(|n| n.to_string()));
    push("cpus-per-task", &s.cpus_per_task.map(|n| n.to_string()));
    push(
        "gres",
        &s.gpus_per_node
            .filter(|&g| g > 0)
            .map(|g| format!("gpu:{g}")),
    );
    o.extend(
        s.sbatch
            .iter()
            .flatten()
            .map(|l| l.trim().trim_start_matches("#SBATCH").trim().to_string()),
    );
    o
}

/// The whole batch script.
pub fn batch_script(settings: &Settings, input: &ScriptInput) -> String {
    let mut text = String::from("#!/bin/bash\n");
    text.push_str(&format!(
        "# Written by repro: {}. Submitted with `sbatch --parsable` by `repro run`.\n",
        input.about,
    ));
    for o in sbatch_options(settings, input) {
        text.push_str(&format!("#SBATCH {o}\n"));
    }
    text.push_str(&format!(
        "\ncd {} || exit 2\n",
        shell_quote(&input.cwd.display().to_string())
    ));
    for line in settings.spec.setup.iter().flatten() {
        text.push_str(line);
        text.push('\n');
    }
    let launcher = match input.ranks {
        true => format!(
            "{} ",
            settings
                .spec
                .srun
                .clone()
                .unwrap_or_else(|| "srun".to_string())
        ),
        false => String::new(),
    };
    let where_ = match input.array {
        None => format!(
            "dir={}\nid=\"$SLURM_JOB_ID\"\n",
            shell_quote(&input.log_dir.display().to_string())
        ),
        Some(ArrayTasks { runs, .. }) => {
            let list = |f: &dyn Fn(&(String, std::path::PathBuf)) -> String| {
                runs.iter()
                    .map(|r| shell_quote(&f(r)))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            format!(
                "runs=({})\ndirs=({})\nrun=\"${{runs[$SLURM_ARRAY_TASK_ID]}}\"\n\
                 dir=\"${{dirs[$SLURM_ARRAY_TASK_ID]}}\"\n\
                 id=\"${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}\"\n\
                 exec >> \"$dir/slurm-$id.out\" 2>&1\n",
                list(&|r| r.0.clone()),
                list(&|r| r.1.display().to_string()),
            )
        }
    };
    text.push_str(&where_);
    let command = shell_line(input.argv).replace(ARRAY_RUN, "\"$run\"");
    text.push_str(&format!(
        r#"echo "repro: Slurm job $id (restart ${{SLURM_RESTART_COUNT:-0}}) on $(hostname) at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
requeue=0
trap 'requeue=1; kill -USR1 "$child" 2>/dev/null' USR1
{launcher}{command} &
child=$!
wait "$child"; rc=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
echo "$rc" > "$dir/slurm-$id.exit"
if [ "$requeue" = 1 ] && [ "$rc" = 3 ]; then
  echo "repro: checkpointed ahead of the time limit; requeueing job $id"
  scontrol requeue "$SLURM_JOB_ID" && exit 0
fi
exit "$rc"
"#,
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::SlurmSpec;

    fn settings(spec: SlurmSpec) -> Settings {
        Settings::from_spec(spec)
    }

    fn input<'a>(argv: &'a [String], dir: &'a std::path::Path, ranks: bool) -> ScriptInput<'a> {
        ScriptInput {
            job_name: "repro-fig23-inception_v4",
            log_dir: dir,
            ranks,
            cwd: std::path::Path::new("/work/my repo"),
            argv,
            about: "run inception_v4 of fig23",
            array: None,
        }
    }

    #[test]
    fn the_settings_become_sbatch_options() {
        let argv = vec!["/bin/repro".to_string(), "run".to_string()];
        let dir = std::path::Path::new("/r/runs/inception_v4-1234");
        let s = settings(SlurmSpec {
            partition: Some("gpu".into()),
            time: Some("2-00:00:00".into()),
            gpus_per_node: Some(4),
            nodes: Some(2),
            tasks_per_node: Some(4),
            sbatch: Some(vec![
                "#SBATCH --constraint=a100".into(),
                "--exclusive".into(),
            ]),
            ..Default::default()
        });
        let o = sbatch_options(&s, &input(&argv, dir, true));
        for expected in [
            "--job-name=repro-fig23-inception_v4",
            "--output=/r/runs/inception_v4-1234/slurm-%j.out",
            "--requeue",
            "--signal=B:USR1@120",
            "--partition=gpu",
            "--time=2-00:00:00",
            "--nodes=2",
            "--ntasks-per-node=4",
            "--gres=gpu:4",
            "--constraint=a100",
            "--exclusive",
        ] {
            assert!(
                o.iter().any(|x| x == expected),
                "{expected} missing from {o:?}"
            );
        }
        assert!(!o.iter().any(|x| x.starts_with("--account")));
        let script = batch_script(&s, &input(&argv, dir, true));
        assert!(script.contains("\nsrun /bin/repro run &\n"), "{script}");
        assert!(script.contains("cd '/work/my repo' || exit 2"), "{script}");
    }

    #[test]
    fn one_rank_runs_repro_directly_and_bash_accepts_the_script() {
        let argv = vec![
            "/bin/repro".to_string(),
            "run".to_string(),
            "a b".to_string(),
        ];
        let dir = std::path::Path::new("/r/x");
        let script = batch_script(&settings(SlurmSpec::default()), &input(&argv, dir, false));
        assert!(script.contains("\n/bin/repro run 'a b' &\n"), "{script}");
        let checked = std::process::Command::new("bash")
            .args(["-n", "-c", &script])
            .output()
            .expect("bash");
        assert!(
            checked.status.success(),
            "{}",
            String::from_utf8_lossy(&checked.stderr)
        );
    }

    #[test]
    fn an_array_task_picks_its_run_and_folder_by_its_index() {
        let argv = vec![
            "/bin/repro".to_string(),
            "--runs".to_string(),
            ARRAY_RUN.to_string(),
        ];
        let tasks = vec![
            ("v4".to_string(), std::path::PathBuf::from("/r/runs/v4-1")),
            (
                "ir v2".to_string(),
                std::path::PathBuf::from("/r/runs/irv2-2"),
            ),
        ];
        let mut i = input(&argv, std::path::Path::new("/r/jobs"), false);
        i.array = Some(ArrayTasks {
            runs: &tasks,
            at_once: Some(1),
        });
        let s = settings(SlurmSpec::default());
        assert!(sbatch_options(&s, &i).contains(&"--array=0-1%1".to_string()));
        assert!(sbatch_options(&s, &i).contains(&"--output=/r/jobs/slurm-%A_%a.out".to_string()));
        let script = batch_script(&s, &i);
        assert!(
            script.contains("\n/bin/repro --runs \"$run\" &\n"),
            "{script}"
        );
        // The task's choice, run by bash as Slurm would for task 1.
        let prelude: String = script
            .lines()
            .skip_while(|l| !l.starts_with("runs="))
            .take_while(|l| !l.starts_with("exec"))
            .map(|l| format!("{l}\n"))
            .collect();
        let out = std::process::Command::new("bash")
            .args([
                "-c",
                &format!("{prelude}printf '%s|%s|%s' \"$run\" \"$dir\" \"$id\""),
            ])
            .env("SLURM_ARRAY_TASK_ID", "1")
            .env("SLURM_ARRAY_JOB_ID", "77")
            .output()
            .expect("bash");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "ir v2|/r/runs/irv2-2|77_1"
        );
    }
}
