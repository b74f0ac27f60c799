//! The paper's published numbers, compiled into the binary: the digitised curves of
//! Figures 21–26 and the values of Tables 2–5 with the crop protocols they use.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::input::{Metric, TableRow};

const FIGURE_CURVES_CSV: &str = include_str!("../../experiments/paper/figure_curves.csv");
const TABLES_YAML: &str = include_str!("../../experiments/paper/tables.yaml");

/// One point of a digitised curve of the paper.
#[derive(Debug, Clone, PartialEq)]
pub struct PaperPoint {
    /// The paper's figure, 21–26.
    pub figure: u32,
    /// Which error the figure shows.
    pub metric: Metric,
    /// The network, e.g. `"inception_v4"`.
    pub network: String,
    /// Epoch (whole epochs).
    pub epoch: f64,
    /// Error in percent.
    pub error_pct: f64,
}

/// Every digitised point of Figures 21–26, in file order (by figure, network, epoch).
///
/// Panics if the compiled-in CSV is malformed, which a unit test rules out.
pub fn paper_curves() -> Vec<PaperPoint> {
    FIGURE_CURVES_CSV
        .lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(|line| parse_curve_line(line).unwrap_or_else(|| panic!("bad curve line {line:?}")))
        .collect()
}

fn parse_curve_line(line: &str) -> Option<PaperPoint> {
    let mut fields = line.trim().split(',');
    let figure = fields.next()?.parse().ok()?;
    let metric_key = fields.next()?;
    let metric = [Metric::Top1, Metric::Top5]
        .into_iter()
        .find(|m| m.key() == metric_key)?;
    let network = fields.next()?.to_string();
    let epoch = fields.next()?.parse().ok()?;
    let error_pct = fields.next()?.parse().ok()?;
    fields.next().is_none().then_some(PaperPoint {
        figure,
        metric,
        network,
        epoch,
        error_pct,
    })
}

/// One row of Tables 2–5 as the paper printed it.
#[derive(Debug, Clone, PartialEq)]
pub struct PaperTableValue {
    /// Top-1 error in percent, if printed.
    pub top1: Option<f64>,
    /// Top-5 error in percent, if printed.
    pub top5: Option<f64>,
    /// Crop protocol key: `"1"`, `"10"`, `"12"`, `"144"` or `"dense"`.
    pub crops: String,
    /// `"nonblacklisted"` (48,238 images) or `"all"` (50,000 images).
    pub eval_set: String,
}

/// Tables 2–5 and the crop-protocol definitions of `tables.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct PaperTables {
    /// Rows keyed by table id (`"table2"` … `"table5"`) and network or ensemble label.
    rows: BTreeMap<String, Vec<(String, PaperTableValue)>>,
    /// Crop protocol key → the paper's (or the data's) definition.
    crop_protocols: BTreeMap<String, String>,
}

impl PaperTables {
    /// The paper's row of `table` (e.g. `"table3"`) for a network (`"inception_v4"`) or an
    /// ensemble label exactly as in `tables.yaml`.
    pub fn lookup(&self, table: &str, label: &str) -> Option<&PaperTableValue> {
        self.rows
            .get(table)?
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, v)| v)
    }

    /// The rows of `table` in the paper's order; empty for an unknown table.
    pub fn rows(&self, table: &str) -> &[(String, PaperTableValue)] {
        self.rows.get(table).map_or(&[], Vec::as_slice)
    }

    /// A table row for `label` carrying the paper's values of `table`, with no results
    /// yet; `None` when the paper's table has no such row.
    pub fn table_row(&self, table: &str, label: &str) -> Option<TableRow> {
        let value = self.lookup(table, label)?;
        Some(TableRow {
            label: label.to_string(),
            paper_top1: value.top1,
            paper_top5: value.top5,
            paper_crops: value.crops.clone(),
            paper_eval_set: value.eval_set.clone(),
            results: Vec::new(),
            note: String::new(),
        })
    }

    /// The definition of a crop protocol key (`"12"`, `"144"`, …), if known.
    pub fn crop_protocol(&self, key: &str) -> Option<&str> {
        self.crop_protocols.get(key).map(String::as_str)
    }
}

#[derive(Deserialize)]
struct RawTables {
    table2: RawTable,
    table3: RawTable,
    table4: RawTable,
    table5: RawTable,
    crop_protocols: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawTable {
    eval_set: String,
    rows: Vec<RawRow>,
}

#[derive(Deserialize)]
struct RawRow {
    network: Option<String>,
    ensemble: Option<String>,
    crops: serde_yaml::Value,
    top1: Option<f64>,
    top5: Option<f64>,
}

/// The paper's Tables 2–5 from the compiled-in `tables.yaml`.
///
/// Panics if the compiled-in YAML is malformed, which a unit test rules out.
pub fn paper_table_values() -> PaperTables {
    let raw: RawTables = serde_yaml::from_str(TABLES_YAML).expect("tables.yaml parses");
    let tables = [
        ("table2", raw.table2),
        ("table3", raw.table3),
        ("table4", raw.table4),
        ("table5", raw.table5),
    ];
    let rows = tables
        .into_iter()
        .map(|(id, table)| {
            let eval_set = table.eval_set;
            let rows = table
                .rows
                .into_iter()
                .map(|row| {
                    let label = row.network.or(row.ensemble).expect("row has a label");
                    let crops = match row.crops {
                        serde_yaml::Value::String(s) => s,
                        serde_yaml::Value::Number(n) => n.to_string(),
                        other => panic!("crops of {label}: {other:?}"),
                    };
                    let value = PaperTableValue {
                        top1: row.top1,
                        top5: row.top5,
                        crops,
                        eval_set: eval_set.clone(),
                    };
                    (label, value)
                })
                .collect();
            (id.to_string(), rows)
        })
        .collect();
    PaperTables {
        rows,
        crop_protocols: raw.crop_protocols,
    }
}

/// The paper's caption of Figures 21–26, shortened.
pub fn paper_figure_caption(figure: u32) -> Option<&'static str> {
    Some(match figure {
        21 => "Top-1 error during training of Inception-v3 vs. Inception-ResNet-v1, a residual network of similar cost (single crop, non-blacklisted validation images). The residual network trains much faster but ends slightly worse.",
        22 => "Top-5 error during training of Inception-v3 vs. Inception-ResNet-v1. The residual network trains much faster but ends slightly worse.",
        23 => "Top-1 error during training of Inception-v4 vs. Inception-ResNet-v2. The residual network converges faster; the final accuracy seems to depend mainly on model size.",
        24 => "Top-5 error during training of Inception-v4 vs. Inception-ResNet-v2. The residual network converges faster.",
        25 => "Top-5 error of all four models (single model, single crop): larger models do better.",
        26 => "Top-1 error of all four models (single model, single crop): larger models do better.",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_parse_with_every_figure_and_network() {
        let points = paper_curves();
        assert_eq!(points.len(), FIGURE_CURVES_CSV.lines().count() - 1);
        let fig23: Vec<_> = points.iter().filter(|p| p.figure == 23).collect();
        assert!(fig23.iter().all(|p| p.metric == Metric::Top1));
        assert!(fig23.iter().any(|p| p.network == "inception_v4"));
        assert!(fig23.iter().any(|p| p.network == "inception_resnet_v2"));
        assert!(points
            .iter()
            .all(|p| (1.0..=100.0).contains(&p.error_pct) && (0.0..=200.0).contains(&p.epoch)));
        for figure in 21..=26 {
            assert!(points.iter().any(|p| p.figure == figure), "figure {figure}");
            assert!(paper_figure_caption(figure).is_some());
        }
    }

    #[test]
    fn malformed_curve_lines_are_rejected() {
        assert!(parse_curve_line("23,top1,inception_v4,40,24.5").is_some());
        assert!(parse_curve_line("23,top3,inception_v4,40,24.5").is_none());
        assert!(parse_curve_line("23,top1,inception_v4,40").is_none());
        assert!(parse_curve_line("23,top1,inception_v4,40,24.5,9").is_none());
    }

    #[test]
    fn table_values_are_found_by_table_and_label() {
        let t = paper_table_values();
        let v4 = t.lookup("table3", "inception_v4").unwrap();
        assert_eq!((v4.top1, v4.top5), (Some(18.7), Some(4.2)));
        assert_eq!(v4.crops, "12");
        assert_eq!(v4.eval_set, "all");
        let irv2 = t.lookup("table2", "inception_resnet_v2").unwrap();
        assert_eq!((irv2.top1, irv2.top5), (Some(19.9), Some(4.9)));
        assert_eq!(irv2.eval_set, "nonblacklisted");
        let resnet = t.lookup("table4", "resnet_151").unwrap();
        assert_eq!(resnet.crops, "dense");
        let ens = t
            .lookup("table5", "inception_v4 x1 + inception_resnet_v2 x3")
            .unwrap();
        assert_eq!((ens.top1, ens.top5), (Some(16.5), Some(3.1)));
        assert_eq!(t.lookup("table5", "resnet_151 x6").unwrap().top1, None);
        assert!(t.lookup("table9", "inception_v4").is_none());
        let row = t.table_row("table4", "inception_resnet_v2").unwrap();
        assert_eq!((row.paper_top1, row.paper_top5), (Some(17.8), Some(3.7)));
        assert_eq!(
            (row.paper_crops.as_str(), row.paper_eval_set.as_str()),
            ("144", "all")
        );
        assert!(row.results.is_empty());
        assert_eq!(t.rows("table2").len(), 5);
        assert!(t.crop_protocol("12").unwrap().contains("not defined"));
    }
}
