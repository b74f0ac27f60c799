//! Tables 2–5: the paper's value, ours (mean ± sd over seeds), the difference, and how
//! ours was measured, as Markdown and as an HTML fragment. Rows that were not run say so.

use super::html::escape;
use super::input::{EvalRecord, TableInput, TableRow};
use super::paper::PaperTables;
use super::stats::{mean, sample_sd};
use super::style::network_name;

/// Column headers, in order (U+2011, a non-breaking hyphen, keeps "top-1" on one line).
const HEADERS: [&str; 12] = [
    "Network",
    "Top\u{2011}1 paper",
    "Top\u{2011}1 ours",
    "Δ top\u{2011}1",
    "Top\u{2011}5 paper",
    "Top\u{2011}5 ours",
    "Δ top\u{2011}5",
    "Eval set",
    "Images",
    "Crops",
    "Seeds",
    "Note",
];

/// Columns holding numbers (right-aligned).
const NUMERIC: [bool; 12] = [
    false, true, true, true, true, true, true, false, true, false, true, false,
];

/// The paper's values and our differences to them.
const PAPER_COLUMNS: [usize; 4] = [1, 3, 4, 6];

/// One table laid out as plain-text cells, with its footnotes.
#[derive(Debug, Clone, PartialEq)]
pub struct TableCells {
    /// The caption.
    pub title: String,
    /// One row of `HEADERS.len()` cells per table row, and whether it was run.
    pub rows: Vec<(Vec<String>, bool)>,
    /// The columns shown (indices into `HEADERS`): all, or without the paper's values and
    /// our differences to them when no row has a paper value.
    pub columns: Vec<usize>,
    /// Footnotes: the crop protocols the table uses, the paper's and ours.
    pub footnotes: Vec<String>,
}

/// Errors in percent with sd: `19.91 ± 0.12`, or `19.91` for one value.
fn mean_sd(values: &[f64]) -> String {
    match (mean(values), sample_sd(values)) {
        (Some(m), Some(sd)) => format!("{m:.2} ± {sd:.2}"),
        (Some(m), None) => format!("{m:.2}"),
        _ => "not run".to_string(),
    }
}

fn paper_value(value: Option<f64>) -> String {
    value.map_or("—".to_string(), |v| format!("{v:.1}"))
}

fn delta(ours: &[f64], paper: Option<f64>) -> String {
    match (mean(ours), paper) {
        (Some(m), Some(p)) => format!("{:+.2}", m - p),
        _ => "—".to_string(),
    }
}

/// A thousands-separated count: `50,000`.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The distinct non-empty values of `get` over `results`, in order of appearance.
fn distinct<'a>(
    results: &'a [EvalRecord],
    get: impl Fn(&'a EvalRecord) -> &'a str,
) -> Vec<&'a str> {
    distinct_strings(results.iter().map(get))
}

/// The distinct non-empty strings of `values`, in order of appearance.
fn distinct_strings<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for v in values {
        if !v.is_empty() && !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// The images evaluated, and how many were left out as unreadable when any were.
fn images(results: &[EvalRecord]) -> String {
    let range = |get: fn(&EvalRecord) -> u64| {
        let min = results.iter().map(get).min();
        let max = results.iter().map(get).max();
        match (min, max) {
            (Some(a), Some(b)) if a == b => count(a),
            (Some(a), Some(b)) => format!("{}–{}", count(a), count(b)),
            _ => "—".to_string(),
        }
    };
    match results.iter().any(|r| !r.skipped.is_empty()) {
        true => format!(
            "{} ({} unreadable skipped)",
            range(|r| r.images),
            range(|r| r.skipped.len() as u64)
        ),
        false => range(|r| r.images),
    }
}

/// Lays out `table`; `paper` supplies the crop protocol definitions.
pub fn table_cells(table: &TableInput, paper: &PaperTables) -> TableCells {
    let with_paper = table
        .rows
        .iter()
        .any(|r| r.paper_top1.is_some() || r.paper_top5.is_some());
    let mut our_crops: Vec<&str> = Vec::new();
    let mut paper_crops: Vec<&str> = Vec::new();
    let rows = table
        .rows
        .iter()
        .map(|row| {
            let top1: Vec<f64> = row.results.iter().map(|r| r.top1_err * 100.0).collect();
            let top5: Vec<f64> = row.results.iter().map(|r| r.top5_err * 100.0).collect();
            let crops = row_crops(row, with_paper, &mut our_crops, &mut paper_crops);
            let run = !row.results.is_empty();
            let cells = vec![
                network_name(&row.label),
                paper_value(row.paper_top1),
                mean_sd(&top1),
                delta(&top1, row.paper_top1),
                paper_value(row.paper_top5),
                mean_sd(&top5),
                delta(&top5, row.paper_top5),
                match with_paper {
                    true => {
                        paper_and_ours(&row.paper_eval_set, distinct(&row.results, |r| &r.eval_set))
                    }
                    false => distinct(&row.results, |r| &r.eval_set).join(", "),
                },
                images(&row.results),
                crops,
                if run {
                    row.results.len().to_string()
                } else {
                    "0".to_string()
                },
                row.note.clone(),
            ];
            (cells, run)
        })
        .collect();
    let mut footnotes: Vec<String> = paper_crops
        .iter()
        .map(|key| {
            let definition = paper.crop_protocol(key).unwrap_or("not described");
            format!("Paper's {key}-crop protocol: {definition}.")
        })
        .collect();
    footnotes.extend(
        our_crops
            .iter()
            .enumerate()
            .map(|(i, d)| format!("[{}] Our crops: {d}.", i + 1)),
    );
    let paper_sets: Vec<&str> =
        distinct_strings(table.rows.iter().map(|r| r.paper_eval_set.as_str()));
    if !paper_sets.is_empty() {
        footnotes.push(format!(
            "Paper's evaluation sets ({}): all = the 50,000 ILSVRC-2012 validation images; \
             nonblacklisted = the 48,238 left after removing the 1,762 blacklisted ones.",
            paper_sets.join(", ")
        ));
    }
    let holdout = crate::data::ImageSet::TrainHoldout.as_str();
    if table
        .rows
        .iter()
        .flat_map(|r| &r.results)
        .any(|r| r.eval_set == holdout)
    {
        footnotes.push(format!(
            "{holdout}: images of the training folder that the runs' training subset left out, \
             a second split disjoint from the training images and from the validation set."
        ));
    }
    footnotes.push(match with_paper {
        true => "Errors in percent; ours are the mean ± sample sd over seeds; Δ = ours − paper.",
        false => "Errors in percent, the mean ± sample sd over seeds. The paper's values are not shown: this experiment is not at the paper's scale.",
    }.to_string());
    let columns = (0..HEADERS.len())
        .filter(|c| with_paper || !PAPER_COLUMNS.contains(c))
        .collect();
    TableCells {
        title: table.title.clone(),
        rows,
        columns,
        footnotes,
    }
}

/// The crops cell of a row: the paper's key and footnote numbers for our protocols,
/// recording both in the table's footnote lists.
fn row_crops<'a>(
    row: &'a TableRow,
    with_paper: bool,
    our_crops: &mut Vec<&'a str>,
    paper_crops: &mut Vec<&'a str>,
) -> String {
    if !row.paper_crops.is_empty() && !paper_crops.contains(&row.paper_crops.as_str()) {
        paper_crops.push(&row.paper_crops);
    }
    let refs: Vec<String> = distinct(&row.results, |r| &r.crop_definition)
        .into_iter()
        .map(|d| {
            let n = match our_crops.iter().position(|c| *c == d) {
                Some(i) => i + 1,
                None => {
                    our_crops.push(d);
                    our_crops.len()
                }
            };
            format!("[{n}]")
        })
        .collect();
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    match with_paper {
        true => paper_and_ours(&row.paper_crops, refs),
        // The protocol's name (`144`) with our footnotes: `144 [1]`.
        false => format!("{} {}", row.paper_crops, refs.join(", "))
            .trim()
            .to_string(),
    }
}

/// A cell naming the paper's setting and ours: `paper all; ours smoke-val`.
fn paper_and_ours(paper: &str, ours: Vec<&str>) -> String {
    match (paper, ours.is_empty()) {
        ("", true) => "—".to_string(),
        ("", false) => format!("ours {}", ours.join(", ")),
        (paper, true) => format!("paper {paper}"),
        (paper, false) => format!("paper {paper}; ours {}", ours.join(", ")),
    }
}

fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The table as GitHub-flavoured Markdown.
pub fn to_markdown(cells: &TableCells) -> String {
    let mut md = format!("### {}\n\n", md_cell(&cells.title));
    let headers: Vec<&str> = cells.columns.iter().map(|&c| HEADERS[c]).collect();
    md.push_str(&format!("| {} |\n", headers.join(" | ")));
    let rule: Vec<&str> = cells
        .columns
        .iter()
        .map(|&c| if NUMERIC[c] { "---:" } else { "---" })
        .collect();
    md.push_str(&format!("| {} |\n", rule.join(" | ")));
    for (row, _) in &cells.rows {
        let row: Vec<String> = cells.columns.iter().map(|&c| md_cell(&row[c])).collect();
        md.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    md.push('\n');
    for note in &cells.footnotes {
        md.push_str(&format!("- {}\n", md_cell(note)));
    }
    md
}

/// The table as an HTML fragment (`<table>` with caption, then the footnotes).
pub fn to_html(cells: &TableCells) -> String {
    let mut html = format!(
        "<div class=\"wide\"><table>\n<caption>{}</caption>\n<tr>",
        escape(&cells.title)
    );
    for &c in &cells.columns {
        html.push_str(&format!("<th>{}</th>", escape(HEADERS[c])));
    }
    html.push_str("</tr>\n");
    for (row, run) in &cells.rows {
        html.push_str(if *run {
            "<tr>"
        } else {
            "<tr class=\"not-run\">"
        });
        for &c in &cells.columns {
            let class = if NUMERIC[c] { " class=\"num\"" } else { "" };
            html.push_str(&format!("<td{class}>{}</td>", escape(&row[c])));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table></div>\n<ul class=\"meta\">\n");
    for note in &cells.footnotes {
        html.push_str(&format!("<li>{}</li>\n", escape(note)));
    }
    html.push_str("</ul>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::paper::paper_table_values;

    fn result(top1: f64, top5: f64) -> EvalRecord {
        EvalRecord {
            top1_err: top1,
            top5_err: top5,
            images: 50_000,
            crops: 12,
            crop_definition: "12 crops (shorter side 320)".to_string(),
            eval_set: "all".to_string(),
            models: Vec::new(),
            skipped: Vec::new(),
        }
    }

    fn table() -> TableInput {
        TableInput {
            id: "table3".to_string(),
            title: "Table 3: 12 crops | single model".to_string(),
            rows: vec![
                TableRow {
                    label: "inception_v4".to_string(),
                    paper_top1: Some(18.7),
                    paper_top5: Some(4.2),
                    paper_crops: "12".to_string(),
                    paper_eval_set: "all".to_string(),
                    results: vec![result(0.19, 0.045), result(0.20, 0.047)],
                    note: String::new(),
                },
                TableRow {
                    label: "resnet_151".to_string(),
                    paper_top1: Some(21.4),
                    paper_top5: Some(5.7),
                    paper_crops: "10".to_string(),
                    paper_eval_set: "all".to_string(),
                    results: vec![],
                    note: "not part of this reproduction".to_string(),
                },
            ],
        }
    }

    #[test]
    fn cells_hold_mean_sd_delta_and_provenance() {
        let cells = table_cells(&table(), &paper_table_values());
        let (v4, run) = &cells.rows[0];
        assert!(run);
        assert_eq!(v4[0], "Inception-v4");
        assert_eq!(v4[1], "18.7");
        assert_eq!(v4[2], "19.50 ± 0.71");
        assert_eq!(v4[3], "+0.80");
        assert_eq!(v4[5], "4.60 ± 0.14");
        assert_eq!(v4[6], "+0.40");
        assert_eq!(v4[7], "paper all; ours all");
        assert_eq!(v4[8], "50,000");
        assert_eq!(v4[9], "paper 12; ours [1]");
        assert_eq!(v4[10], "2");
        assert!(cells.footnotes[0].contains("12-crop protocol: not defined"));
        assert!(cells
            .footnotes
            .iter()
            .any(|f| f == "[1] Our crops: 12 crops (shorter side 320)."));
    }

    #[test]
    fn rows_not_run_say_so() {
        let cells = table_cells(&table(), &paper_table_values());
        let (resnet, run) = &cells.rows[1];
        assert!(!run);
        assert_eq!(resnet[2], "not run");
        assert_eq!(resnet[3], "—");
        assert_eq!(resnet[10], "0");
        let md = to_markdown(&cells);
        assert!(md.contains("| ResNet-151 | 21.4 | not run | — |"), "{md}");
        assert!(md.contains("12 crops \\| single model"), "{md}");
        let html = to_html(&cells);
        assert!(
            html.contains("<tr class=\"not-run\"><td>ResNet-151</td>"),
            "{html}"
        );
    }

    #[test]
    fn a_table_without_paper_values_drops_their_columns() {
        let mut t = table();
        for row in &mut t.rows {
            row.paper_top1 = None;
            row.paper_top5 = None;
        }
        let cells = table_cells(&t, &paper_table_values());
        assert_eq!(cells.columns, [0, 2, 5, 7, 8, 9, 10, 11]);
        let md = to_markdown(&cells);
        assert!(
            md.contains("| Network | Top\u{2011}1 ours | Top\u{2011}5 ours | Eval set |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| Inception-v4 | 19.50 ± 0.71 | 4.60 ± 0.14 | all | 50,000 | 12 [1] | 2 |"
            ),
            "{md}"
        );
        assert!(!md.contains('Δ'), "{md}");
        let html = to_html(&cells);
        assert_eq!(html.matches("<th>").count(), 8);
        assert!(
            html.contains("<td class=\"num\">19.50 ± 0.71</td>"),
            "{html}"
        );
        assert!(cells
            .footnotes
            .last()
            .unwrap()
            .contains("not at the paper's scale"));
    }

    #[test]
    fn the_images_cell_says_how_many_unreadable_images_were_left_out() {
        let mut t = table();
        t.rows[0].results[0].images = 49_996;
        t.rows[0].results[0].skipped = vec!["a.jpg".into(); 4];
        let cells = table_cells(&t, &paper_table_values());
        assert_eq!(cells.rows[0].0[8], "49,996–50,000 (0–4 unreadable skipped)");
        t.rows[0].results[1] = t.rows[0].results[0].clone();
        let cells = table_cells(&t, &paper_table_values());
        assert_eq!(cells.rows[0].0[8], "49,996 (4 unreadable skipped)");
    }

    #[test]
    fn a_held_out_split_is_explained_under_the_table() {
        let mut t = table();
        t.rows[0].results[0].eval_set = "train-holdout".into();
        let cells = table_cells(&t, &paper_table_values());
        assert!(
            cells
                .footnotes
                .iter()
                .any(|f| f.starts_with("train-holdout: images of the training folder")),
            "{:?}",
            cells.footnotes
        );
        assert!(!table_cells(&table(), &paper_table_values())
            .footnotes
            .iter()
            .any(|f| f.starts_with("train-holdout")));
    }

    #[test]
    fn counts_are_grouped() {
        assert_eq!(count(48_238), "48,238");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000_000), "1,000,000");
    }
}
