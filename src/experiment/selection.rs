//! Which runs a command line names (`--runs`, `--restart`): comma-separated lists whose names
//! may themselves hold commas (a sweep cell's `init=pytorch,clip_mode=per_variable`), and a name
//! that stands for every run under it (a sweep, or one cell of it with all its seeds).

/// Splits one `--runs` argument into run names at the commas that separate names. A comma is
/// part of a name inside brackets (a list value, `[1, 1]`) and where the text after it starts
/// another `key=value` pair of a sweep cell (the part before its next `/` or `,` holds `=`):
/// a run's own name never starts that way, since names declared in a file hold no `=`.
pub fn split_run_list(arg: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for (i, c) in arg.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 && !continues_cell(&arg[i + 1..]) => {
                names.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    names.push(current);
    names
        .into_iter()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

/// Whether `rest` (the text after a comma) goes on with a sweep cell's next `key=value`.
fn continues_cell(rest: &str) -> bool {
    let head = rest.split(['/', ',']).next().unwrap_or("");
    head.contains('=')
}

/// The runs of `known` (in its order) that `requested` names: each requested name selects the
/// run of that name and every run whose name continues it after a `/` (`inception_v4_ablation`
/// selects the sweep's runs, `inception_v4_ablation/init=pytorch,clip_mode=global_norm` that
/// cell's seeds). A name that selects nothing is an error naming it and the runs there are.
pub fn select_runs(requested: &[String], known: &[String]) -> Result<Vec<String>, String> {
    let mut selected = vec![false; known.len()];
    for name in requested {
        let mut any = false;
        for (k, chosen) in known.iter().zip(selected.iter_mut()) {
            if k == name
                || k.strip_prefix(name.as_str())
                    .is_some_and(|r| r.starts_with('/'))
            {
                *chosen = true;
                any = true;
            }
        }
        if !any {
            return Err(format!(
                "the files use no run `{name}` (nor runs under `{name}/`); they use: {}",
                known.join(", ")
            ));
        }
    }
    Ok(known
        .iter()
        .zip(selected)
        .filter(|(_, chosen)| *chosen)
        .map(|(k, _)| k.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn commas_inside_a_sweep_cell_stay_in_the_name() {
        assert_eq!(
            split_run_list("inception_v4,a/init=pytorch,clip_mode=per_variable/seed=1,b"),
            names(&[
                "inception_v4",
                "a/init=pytorch,clip_mode=per_variable/seed=1",
                "b"
            ])
        );
        // A cell name without seeds, then another run.
        assert_eq!(
            split_run_list("a/init=pytorch,clip_mode=global_norm,inception_v3"),
            names(&["a/init=pytorch,clip_mode=global_norm", "inception_v3"])
        );
        // List values keep their commas; spaces and empty pieces go.
        assert_eq!(
            split_run_list(" a/pad=[1, 1],lr=0.1/seed=0 , ,b"),
            names(&["a/pad=[1, 1],lr=0.1/seed=0", "b"])
        );
        assert_eq!(split_run_list("a,b,c"), names(&["a", "b", "c"]));
    }

    #[test]
    fn a_name_selects_the_runs_under_it() {
        let known = names(&[
            "inception_v3",
            "v4_ablation/init=pytorch,clip_mode=global_norm/seed=0",
            "v4_ablation/init=pytorch,clip_mode=global_norm/seed=1",
            "v4_ablation/init=tf_slim,clip_mode=global_norm/seed=0",
            "v4_ablation_extra",
        ]);
        assert_eq!(
            select_runs(&names(&["v4_ablation"]), &known).unwrap(),
            known[1..4].to_vec()
        );
        assert_eq!(
            select_runs(
                &names(&[
                    "v4_ablation/init=pytorch,clip_mode=global_norm",
                    "inception_v3"
                ]),
                &known
            )
            .unwrap(),
            known[..3].to_vec()
        );
        // Exact names, each once, in the files' order.
        assert_eq!(
            select_runs(
                &names(&["v4_ablation_extra", known[2].as_str(), "v4_ablation_extra"]),
                &known
            )
            .unwrap(),
            vec![known[2].clone(), known[4].clone()]
        );
        // A prefix that is not a whole name part selects nothing.
        let err = select_runs(&names(&["v4_abl"]), &known).unwrap_err();
        assert!(err.contains("no run `v4_abl`"), "{err}");
        assert!(err.contains("inception_v3"), "{err}");
    }
}
