//! Sweeps: a run whose `sweep:` maps dotted setting paths to lists of values, and whose
//! `seeds:` gives a count or a list, stands for the grid of runs those lists span — one per
//! combination and seed, named `base/init=pytorch,clip_mode=per_variable/seed=1`. Each is an
//! ordinary run afterwards: its configuration (not the order the lists were written in)
//! gives its hash.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use super::yaml::set_path;

/// `seeds:` as written: how many (seeds 0 to N-1), or which.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Seeds {
    Count(u64),
    List(Vec<u64>),
}

impl Seeds {
    fn values(&self) -> Vec<u64> {
        match self {
            Seeds::Count(n) => (0..*n).collect(),
            Seeds::List(list) => list.clone(),
        }
    }
}

/// A run's `sweep:` and `seeds:`, taken out of its merged settings.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Setting path → its values, in path order (so names do not depend on the writing order).
    pub axes: BTreeMap<String, Vec<Value>>,
    pub seeds: Option<Vec<u64>>,
}

/// One run of a sweep.
#[derive(Debug)]
pub struct Cell {
    /// `base/init=pytorch/seed=1`.
    pub name: String,
    /// The name without its seed: the runs that a figure draws as one band.
    pub label: String,
    /// The run's settings with the cell's values set.
    pub settings: Value,
}

/// Why a sweep cannot be expanded, and the setting path to point at.
#[derive(Debug)]
pub struct SweepError {
    /// The path as written under `sweep:` (or `seeds`), to find its line.
    pub key: String,
    pub message: String,
}

/// Removes `sweep` and `seeds` from a run's merged settings; `None` when it has neither.
/// Paths in `fixed` (set by `--set` for every run) are left out of the sweep: the override wins.
pub fn take_sweep(settings: &mut Value, fixed: &[String]) -> Result<Option<Sweep>, SweepError> {
    let Value::Mapping(map) = settings else {
        return Ok(None);
    };
    let axes = map.remove("sweep");
    let seeds = map.remove("seeds");
    if axes.is_none() && seeds.is_none() {
        return Ok(None);
    }
    let mut sweep = Sweep::default();
    if let Some(axes) = axes {
        let axes: BTreeMap<String, Vec<Value>> =
            serde_yaml::from_value(axes).map_err(|e| SweepError {
                key: "sweep".into(),
                message: format!("`sweep` maps setting paths to lists of values: {e}"),
            })?;
        for (key, values) in axes {
            if values.is_empty() {
                return Err(SweepError {
                    message: format!("sweep `{key}` lists no values"),
                    key,
                });
            }
            if matches!(key.as_str(), "seed" | "extends") || key.starts_with("sweep") {
                return Err(SweepError {
                    message: format!("`{key}` cannot be swept (use `seeds:` for seeds)"),
                    key,
                });
            }
            if !fixed.contains(&key) {
                sweep.axes.insert(key, values);
            }
        }
    }
    if let Some(seeds) = seeds {
        let seeds: Seeds = serde_yaml::from_value(seeds).map_err(|_| SweepError {
            key: "seeds".into(),
            message: "`seeds` is a count or a list of seeds".into(),
        })?;
        let values = seeds.values();
        if values.is_empty() {
            return Err(SweepError {
                key: "seeds".into(),
                message: "`seeds` gives no seed".into(),
            });
        }
        sweep.seeds = Some(values);
    }
    Ok(Some(sweep))
}

/// Every run of `sweep` over `settings`: the grid of its axes, times its seeds.
pub fn cells(base: &str, settings: &Value, sweep: &Sweep) -> Result<Vec<Cell>, SweepError> {
    let mut grid: Vec<Vec<(&String, &Value)>> = vec![Vec::new()];
    for (key, values) in &sweep.axes {
        grid = grid
            .into_iter()
            .flat_map(|combo| {
                values.iter().map(move |v| {
                    let mut next = combo.clone();
                    next.push((key, v));
                    next
                })
            })
            .collect();
    }
    let mut out = Vec::new();
    for combo in grid {
        let mut label = base.to_string();
        if !combo.is_empty() {
            let parts: Vec<String> = combo
                .iter()
                .map(|(k, v)| format!("{}={}", short_key(k), value_text(v)))
                .collect();
            label = format!("{label}/{}", parts.join(","));
        }
        let mut cell = settings.clone();
        for (key, value) in &combo {
            set_path(&mut cell, key, (*value).clone()).map_err(|message| SweepError {
                key: (*key).clone(),
                message: format!("sweep `{key}`: {message}"),
            })?;
        }
        match &sweep.seeds {
            None => out.push(Cell {
                name: label.clone(),
                label,
                settings: cell,
            }),
            Some(seeds) => {
                for seed in seeds {
                    let mut seeded = cell.clone();
                    set_path(&mut seeded, "seed", Value::from(*seed)).map_err(|message| {
                        SweepError {
                            key: "seeds".into(),
                            message,
                        }
                    })?;
                    out.push(Cell {
                        name: format!("{label}/seed={seed}"),
                        label: label.clone(),
                        settings: seeded,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// `train.clip_mode` → `clip_mode`.
fn short_key(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

/// A value as a run name shows it: `pytorch`, `0.5`, `true`, `[1, 1, 1]`.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        Value::Sequence(items) => format!(
            "[{}]",
            items.iter().map(value_text).collect::<Vec<_>>().join(", ")
        ),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .replace('\n', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn a_grid_times_seeds_with_names_in_path_order() {
        let mut settings = yaml(
            "model: {arch: inception_v4}\nsweep: {train.clip_mode: [global_norm, per_variable], model.init: [tf_slim, pytorch]}\nseeds: 2\n",
        );
        let sweep = take_sweep(&mut settings, &[]).unwrap().unwrap();
        assert!(settings.get("sweep").is_none() && settings.get("seeds").is_none());
        let cells = cells("v4", &settings, &sweep).unwrap();
        let names: Vec<&str> = cells.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "v4/init=tf_slim,clip_mode=global_norm/seed=0",
                "v4/init=tf_slim,clip_mode=global_norm/seed=1",
                "v4/init=tf_slim,clip_mode=per_variable/seed=0",
                "v4/init=tf_slim,clip_mode=per_variable/seed=1",
                "v4/init=pytorch,clip_mode=global_norm/seed=0",
                "v4/init=pytorch,clip_mode=global_norm/seed=1",
                "v4/init=pytorch,clip_mode=per_variable/seed=0",
                "v4/init=pytorch,clip_mode=per_variable/seed=1",
            ]
        );
        let last = &cells[7].settings;
        assert_eq!(last["model"]["init"], yaml("pytorch"));
        assert_eq!(last["train"]["clip_mode"], yaml("per_variable"));
        assert_eq!(last["seed"], yaml("1"));
        assert_eq!(cells[7].label, "v4/init=pytorch,clip_mode=per_variable");
    }

    #[test]
    fn seeds_alone_a_fixed_path_and_bad_sweeps() {
        let mut settings = yaml("seeds: [3, 7]\nsweep: {train.epochs: [1, 2]}\n");
        let sweep = take_sweep(&mut settings, &["train.epochs".into()])
            .unwrap()
            .unwrap();
        let names: Vec<String> = cells("r", &settings, &sweep)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["r/seed=3", "r/seed=7"]);
        assert!(take_sweep(&mut yaml("a: 1"), &[]).unwrap().is_none());
        let empty = take_sweep(&mut yaml("sweep: {train.lr.base_lr: []}"), &[]).unwrap_err();
        assert_eq!(empty.key, "train.lr.base_lr");
        assert!(
            empty.message.contains("lists no values"),
            "{}",
            empty.message
        );
        let seed = take_sweep(&mut yaml("sweep: {seed: [1, 2]}"), &[]).unwrap_err();
        assert!(seed.message.contains("seeds:"), "{}", seed.message);
        let none = take_sweep(&mut yaml("seeds: 0"), &[]).unwrap_err();
        assert_eq!(none.key, "seeds");
    }
}
