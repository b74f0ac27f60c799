//! What a report is made of: plain data that the runner fills from stored results.
//!
//! Errors are fractions in [0, 1] everywhere in this input, as in
//! [`MetricsRow`](crate::store::MetricsRow); the report shows them in percent, like the
//! paper. The paper's own values (`paper_top1`, `paper_top5`) are in percent, as printed.

pub use crate::eval::EvalRecord;
pub use crate::store::metrics::Metric;
use crate::store::{MetricsRow, Provenance};

/// Everything one experiment's report shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportInput {
    /// The experiment's name, e.g. `"fig23_v4_vs_irv2"`; also its folder under `reports/`.
    pub experiment: String,
    /// A human title for the page.
    pub title: String,
    /// What the experiment does, in a sentence or two.
    pub description: String,
    /// A warning shown above everything else (smoke data whose numbers mean nothing).
    pub notice: Option<String>,
    /// Whether the experiment trains at the paper's scale (full ImageNet, paper schedule).
    /// Figures then overlay the paper's digitised curves.
    pub paper_scale: bool,
    /// Error-curve figures (Figures 21–26 or the experiment's own).
    pub figures: Vec<FigureInput>,
    /// Result tables (Tables 2–5 or the experiment's own).
    pub tables: Vec<TableInput>,
    /// The training runs (their learning rates and throughput are drawn together).
    pub runs: Vec<RunInfo>,
    /// Known deviations from the paper, one sentence each.
    pub deviations: Vec<String>,
    /// The paper's claims that this experiment tests, with verdicts.
    pub claims: Vec<Claim>,
    /// The command that produced the results, e.g. `"repro run experiments/fig23.yaml"`.
    pub command: String,
    /// When the report was generated (RFC 3339).
    pub generated_at: String,
    /// The code version the report was generated from.
    pub commit: String,
    /// The runs a process was training when the report was generated, each with where it
    /// stood (`inception_v4: training, step 340 of 1,200`); empty once all have stopped.
    /// The page then says so and reloads itself.
    pub training: Vec<String>,
}

/// One error-against-epoch figure.
#[derive(Debug, Clone, PartialEq)]
pub struct FigureInput {
    /// File stem of the figure, e.g. `"fig23"`; characters outside `[A-Za-z0-9._-]` become `_`.
    pub id: String,
    /// The paper's figure this one reproduces (21–26), if any.
    pub paper_figure: Option<u32>,
    /// The chart's title; `None` derives it from `paper_figure` or `id` and the metric.
    pub title: Option<String>,
    /// Which error is plotted.
    pub metric: Metric,
    /// Draw the paper's digitised curves of `paper_figure` beside ours even when the
    /// experiment is not at paper scale.
    pub overlay_paper: bool,
    /// One entry per (network, seed) run.
    pub series: Vec<Series>,
}

/// The evaluation points of one training run of one network.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The network, as the paper's data names it: `inception_v3`, `inception_resnet_v1`,
    /// `inception_v4`, `inception_resnet_v2`.
    pub network: String,
    /// The legend text for the network; empty means the network's usual name.
    pub label: String,
    /// The run's seed.
    pub seed: u64,
    /// The run's metrics; rows without the figure's metric are skipped.
    pub rows: Vec<MetricsRow>,
    /// How the run stands: `"done"`, `"diverged at step 1234"`, `"training, step 340 of
    /// 1,200"`, `"not started"`; anything but `"done"` is said in the legend.
    pub status: String,
}

/// One results table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInput {
    /// File stem, e.g. `"table3"`; characters outside `[A-Za-z0-9._-]` become `_`.
    pub id: String,
    /// Caption, e.g. `"Table 3: 10/12-crop evaluation, single model"`.
    pub title: String,
    /// One row per network or ensemble, in display order.
    pub rows: Vec<TableRow>,
}

/// One network's (or ensemble's) line of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    /// The network or ensemble, e.g. `"inception_v4"` or `"inception_v4 x1 + inception_resnet_v2 x3"`.
    pub label: String,
    /// The paper's top-1 error in percent, if it printed one.
    pub paper_top1: Option<f64>,
    /// The paper's top-5 error in percent, if it printed one.
    pub paper_top5: Option<f64>,
    /// The paper's crop protocol for this row, e.g. `"12"` or `"dense"`.
    pub paper_crops: String,
    /// The paper's evaluation set for this row: `"nonblacklisted"` or `"all"`.
    pub paper_eval_set: String,
    /// Our evaluations, one per seed (or per ensemble draw); empty when not run.
    pub results: Vec<EvalRecord>,
    /// Anything a reader should know about this row; may be empty.
    pub note: String,
}

/// One training run, for the "what was run" and provenance sections.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// The run's name, e.g. `"inception_v4-seed1"`.
    pub name: String,
    /// Its network (`inception_v4`), for the colour of its lines.
    pub network: String,
    /// The configuration hash of its results folder.
    pub hash: String,
    /// The fully resolved configuration, as stored.
    pub config_yaml: String,
    /// Its provenance, if the file was found.
    pub provenance: Option<Provenance>,
    /// How it stands when the report is rendered (`"training, step 340 of 1,200"`); empty
    /// to show the status its provenance records.
    pub status: String,
    /// Its metrics rows (for the learning-rate and throughput plots and the duration).
    pub metrics: Vec<MetricsRow>,
    /// The learning rate the schedule prescribes, as (epoch, rate) points over the whole run;
    /// empty to draw the rates recorded in `metrics` instead.
    pub lr_schedule: Vec<(f64, f64)>,
}

impl RunInfo {
    /// The metrics rows of the run called `name` among `runs` (none when it has not started).
    pub fn metrics_of(runs: &[RunInfo], name: &str) -> Vec<MetricsRow> {
        runs.iter()
            .find(|r| r.name == name)
            .map(|r| r.metrics.clone())
            .unwrap_or_default()
    }
}

/// A claim of the paper and what the experiment's data says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The claim, ideally close to the paper's wording.
    pub statement: String,
    /// What the data says.
    pub verdict: Verdict,
    /// The numbers behind the verdict, in a sentence.
    pub evidence: String,
}

/// The outcome of testing a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Verdict {
    /// The data agrees with the claim.
    #[serde(rename = "supported")]
    Supported,
    /// The data contradicts the claim.
    #[serde(rename = "not supported")]
    NotSupported,
    /// The data is too thin or too mixed to say.
    #[serde(rename = "inconclusive")]
    Inconclusive,
}

impl Verdict {
    /// `"supported"`, `"not supported"` or `"inconclusive"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Supported => "supported",
            Verdict::NotSupported => "not supported",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// One experiment in the top-level `reports/index.html`.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    /// The experiment's folder under the reports root (its `index.html` is linked).
    pub experiment: String,
    /// Its title.
    pub title: String,
    /// Its one-line description.
    pub description: String,
    /// When its report was generated (RFC 3339).
    pub generated_at: String,
    /// The claims it tests, for a verdict summary.
    pub claims: Vec<Claim>,
}
