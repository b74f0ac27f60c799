//! The verdicts on an experiment's claims: each check of the YAML (`ClaimCheck`) gathered
//! from the runs' metrics and the tables' stored evaluations, and judged by `report::claims`.

use super::plan::{PlannedRun, RunProgress};
use super::tables::RowResults;
use crate::experiment::{ClaimCheck, Experiment, RunNames, TableSpec};
use crate::report::{
    ensembles_lower_error, more_crops_lower_error, residual_scaling_prevents_death,
    residual_speeds_up_training, size_over_residual, Claim, EnsembleRow, EvalRecord, NetworkRuns,
    RunInfo, TableErrors,
};
use crate::store::MetricsRow;

/// The verdict of one claim from the runs' metrics and the tables' evaluations.
pub fn check_claim(
    experiment: &Experiment,
    check: &ClaimCheck,
    planned: &[PlannedRun],
    runs: &[RunInfo],
    table_results: &dyn Fn(&TableSpec, usize) -> RowResults,
) -> Claim {
    let metrics = |names: &RunNames| -> Vec<Vec<MetricsRow>> {
        names
            .names()
            .iter()
            .map(|n| RunInfo::metrics_of(runs, n))
            .collect()
    };
    let diverged = |names: &RunNames| -> Vec<bool> {
        names
            .names()
            .iter()
            .map(|n| {
                planned
                    .iter()
                    .any(|p| &p.run.name == n && matches!(p.progress, RunProgress::Diverged { .. }))
            })
            .collect()
    };
    let arch = |names: &RunNames| {
        names
            .names()
            .first()
            .map(|n| experiment.runs[n].config.model.arch.name())
            .unwrap_or_default()
    };
    let table = |id: &str| {
        experiment
            .tables
            .iter()
            .find(|t| t.id == id)
            .expect("claims name defined tables (checked on load)")
    };
    match check {
        ClaimCheck::ResidualFaster {
            residual,
            plain,
            metric: m,
        } => residual_speeds_up_training(
            arch(residual),
            &metrics(residual),
            arch(plain),
            &metrics(plain),
            *m,
        ),
        ClaimCheck::SizeOverResidual {
            small,
            large,
            metric: m,
        } => {
            let names = [&small.plain, &small.residual, &large.plain, &large.residual];
            let rows: Vec<Vec<Vec<MetricsRow>>> = names.iter().map(|n| metrics(n)).collect();
            let flags: Vec<Vec<bool>> = names.iter().map(|n| diverged(n)).collect();
            let net = |i: usize| NetworkRuns {
                name: arch(names[i]),
                runs: &rows[i],
                diverged: &flags[i],
            };
            size_over_residual([net(0), net(1)], [net(2), net(3)], *m)
        }
        ClaimCheck::ResidualScaling { scaled, unscaled } => {
            let (rows_s, rows_u) = (metrics(scaled), metrics(unscaled));
            let (div_s, div_u) = (diverged(scaled), diverged(unscaled));
            let classes = scaled
                .names()
                .first()
                .map(|n| experiment.runs[n].config.model.num_classes)
                .unwrap_or(1000);
            residual_scaling_prevents_death(
                NetworkRuns {
                    name: arch(scaled),
                    runs: &rows_s,
                    diverged: &div_s,
                },
                NetworkRuns {
                    name: arch(unscaled),
                    runs: &rows_u,
                    diverged: &div_u,
                },
                classes,
            )
        }
        ClaimCheck::MoreCropsLowerError {
            fewer,
            more,
            metric: m,
        } => {
            fn errors<'t>(
                t: &'t TableSpec,
                results: &dyn Fn(&TableSpec, usize) -> RowResults,
            ) -> TableErrors<'t> {
                TableErrors {
                    crops: t.crops,
                    rows: t
                        .rows
                        .iter()
                        .enumerate()
                        .map(|(i, row)| (row.label.as_str(), results(t, i)))
                        .collect(),
                }
            }
            more_crops_lower_error(
                &errors(table(fewer), table_results),
                &errors(table(more), table_results),
                *m,
            )
        }
        ClaimCheck::EnsembleLowersError {
            ensembles,
            singles,
            metric: m,
        } => {
            let (ens, single) = (table(ensembles), table(singles));
            let single_results: Vec<EvalRecord> = (0..single.rows.len())
                .flat_map(|i| table_results(single, i))
                .collect();
            let alone = |run: &String| {
                let folder = experiment.runs.get(run)?.folder_name();
                single_results
                    .iter()
                    .find(|r| r.models == [folder.clone()])
                    .cloned()
            };
            let rows: Vec<EnsembleRow> = ens
                .rows
                .iter()
                .enumerate()
                .filter(|(_, row)| row.ensemble)
                .map(|(i, row)| EnsembleRow {
                    label: row.label.clone(),
                    ensemble: table_results(ens, i).into_iter().next(),
                    members: row.runs.iter().map(|r| (r.clone(), alone(r))).collect(),
                })
                .collect();
            ensembles_lower_error(&rows, *m)
        }
    }
}
