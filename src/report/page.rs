//! The experiment page, `reports/<experiment>/index.html`: claims and verdicts, figures,
//! tables, what was run, and the known deviations from the paper.

use super::curves::{error_curve, shows_paper};
use super::html::{escape, file_stem, reloading_page};
use super::input::{Claim, FigureInput, ReportInput, Series};
use super::paper::paper_figure_caption;
use super::runs_section::runs_section;
use super::stats::{mean, sample_sd};
use super::style::network_name;

/// A verdict badge: `<span class="verdict supported">supported</span>`.
pub fn verdict_badge(claim: &Claim) -> String {
    let text = claim.verdict.as_str();
    format!(
        "<span class=\"verdict {}\">{}</span>",
        text.replace(' ', "-"),
        escape(text)
    )
}

fn claims_section(claims: &[Claim]) -> String {
    let mut html = String::from("<h2 id=\"claims\">Claims of the paper tested here</h2>\n");
    if claims.is_empty() {
        html.push_str("<p>This experiment tests no claim of the paper directly.</p>\n");
        return html;
    }
    html.push_str("<table>\n<tr><th>Claim</th><th>Verdict</th><th>Evidence</th></tr>\n");
    for claim in claims {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&claim.statement),
            verdict_badge(claim),
            escape(&claim.evidence)
        ));
    }
    html.push_str("</table>\n");
    html
}

/// The caption under a figure: the paper's caption, how to read the lines, file links.
fn figure_caption(figure: &FigureInput, paper_scale: bool, stem: &str) -> String {
    let mut parts = Vec::new();
    if let Some(n) = figure.paper_figure {
        let caption = paper_figure_caption(n).unwrap_or("");
        parts.push(format!("Paper, Figure {n}: {}", escape(caption)));
    }
    let several_seeds = figure.series.iter().any(|s| {
        figure
            .series
            .iter()
            .filter(|t| t.network == s.network)
            .count()
            > 1
    });
    if several_seeds {
        parts.push("Thin lines: single seeds; bold: their mean.".to_string());
    }
    if shows_paper(figure, paper_scale) {
        parts.push(
            "Faint lines: the paper's curves, digitised from its figure (about ±0.1 points)."
                .to_string(),
        );
    }
    parts.push(format!(
        "Files: <a href=\"figures/{stem}.png\">PNG</a>, <a href=\"figures/{stem}.svg\">SVG</a>."
    ));
    parts.join(" ")
}

/// The per-series table under a figure: status, last and best error.
fn series_table(figure: &FigureInput) -> String {
    let metric = figure.metric.quantity();
    let mut html = format!(
        "<div class=\"wide\"><table>\n<tr><th>Curve</th><th>Seed</th><th>Status</th><th>Evaluations</th>\
         <th>Last epoch</th><th>Last {metric} %</th><th>Lowest {metric} %</th></tr>\n"
    );
    for series in &figure.series {
        let curve = error_curve(figure, series);
        let last = curve.last();
        let best = curve.iter().map(|p| p.1).min_by(f64::total_cmp);
        let cells = [
            curve_name(series),
            series.seed.to_string(),
            series.status.clone(),
            curve.len().to_string(),
            last.map_or("—".to_string(), |p| format!("{:.2}", p.0)),
            last.map_or("—".to_string(), |p| format!("{:.2}", p.1)),
            best.map_or("—".to_string(), |b| format!("{b:.2}")),
        ];
        html.push_str("<tr>");
        for (i, cell) in cells.iter().enumerate() {
            let class = if i == 0 || i == 2 {
                ""
            } else {
                " class=\"num\""
            };
            html.push_str(&format!("<td{class}>{}</td>", escape(cell)));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table></div>\n");
    html
}

/// A series' curve as the legend names it: its label, else its network.
fn curve_name(series: &Series) -> String {
    match series.label.is_empty() {
        true => network_name(&series.network),
        false => series.label.clone(),
    }
}

/// Each curve's last error over its runs (mean ± sd, n), when some curve averages several
/// runs (seeds, or a sweep's cells).
fn final_error_table(figure: &FigureInput) -> String {
    let mut curves: Vec<(String, Vec<f64>, usize)> = Vec::new();
    for series in &figure.series {
        let name = curve_name(series);
        let last = error_curve(figure, series).last().map(|p| p.1);
        match curves.iter_mut().find(|(n, _, _)| *n == name) {
            Some((_, values, runs)) => {
                values.extend(last);
                *runs += 1;
            }
            None => curves.push((name, last.into_iter().collect(), 1)),
        }
    }
    if curves.iter().all(|(_, _, runs)| *runs < 2) {
        return String::new();
    }
    let metric = figure.metric.quantity();
    let mut html = format!(
        "<div class=\"wide\"><table>\n<tr><th>Curve</th><th>Runs</th><th>Last {metric} % (mean ± sd over the runs evaluated)</th></tr>\n"
    );
    for (name, values, runs) in &curves {
        let cell = match (mean(values), sample_sd(values)) {
            (Some(m), Some(sd)) => format!("{m:.2} ± {sd:.2} (n = {})", values.len()),
            (Some(m), None) => format!("{m:.2} (n = 1)"),
            _ => "—".to_string(),
        };
        html.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{runs}</td><td class=\"num\">{}</td></tr>\n",
            escape(name),
            escape(&cell)
        ));
    }
    html.push_str("</table></div>\n");
    html
}

fn figures_section(input: &ReportInput) -> String {
    let mut html = String::from("<h2 id=\"figures\">Figures</h2>\n");
    if input.figures.is_empty() {
        html.push_str("<p>This experiment has no error-curve figures.</p>\n");
    }
    for figure in &input.figures {
        let stem = file_stem(&figure.id);
        let heading = match figure.paper_figure {
            Some(n) => format!("Figure {n} ({})", figure.metric.label()),
            None => format!("{} ({})", figure.id, figure.metric.label()),
        };
        html.push_str(&format!(
            "<h3 id=\"{stem}\">{}</h3>\n<figure><a href=\"figures/{stem}.svg\"><img src=\"figures/{stem}.svg\" alt=\"{}\"></a>\
             <figcaption>{}</figcaption></figure>\n",
            escape(&heading),
            escape(&format!("{heading}: error against epoch")),
            figure_caption(figure, input.paper_scale, &stem)
        ));
        html.push_str(&final_error_table(figure));
        html.push_str(&series_table(figure));
    }
    html
}

fn tables_section(tables: &[(String, String)]) -> String {
    let mut html = String::from("<h2 id=\"tables\">Tables</h2>\n");
    if tables.is_empty() {
        html.push_str("<p>This experiment has no result tables.</p>\n");
    }
    for (stem, fragment) in tables {
        html.push_str(fragment);
        html.push_str(&format!(
            "<p class=\"meta\">Files: <a href=\"tables/{stem}.md\">Markdown</a>, \
             <a href=\"tables/{stem}.html\">HTML</a>.</p>\n"
        ));
    }
    html
}

fn deviations_section(deviations: &[String]) -> String {
    let mut html = String::from("<h2 id=\"deviations\">Known deviations from the paper</h2>\n");
    if deviations.is_empty() {
        html.push_str("<p>None recorded.</p>\n");
        return html;
    }
    html.push_str("<ul>\n");
    for d in deviations {
        html.push_str(&format!("<li>{}</li>\n", escape(d)));
    }
    html.push_str("</ul>\n");
    html
}

/// Seconds after which a browser reloads a page rendered while runs train.
pub const RELOAD_SECONDS: u32 = 30;

/// What a page rendered while runs train says first: when it was rendered, which runs
/// were training and how far they had got.
fn training_notice(input: &ReportInput) -> String {
    if input.training.is_empty() {
        return String::new();
    }
    let runs: Vec<String> = input
        .training
        .iter()
        .map(|r| format!("<li>{}</li>", escape(r)))
        .collect();
    format!(
        "<div class=\"live\"><p><b>Runs are training.</b> Rendered {} from the evaluations \
         stored so far; the figures, tables and verdicts are provisional, and unfinished runs \
         are marked in the legends and tables. repro renders this page again after \
         evaluations, and the browser reloads it every {RELOAD_SECONDS} s.</p>\n<ul>{}</ul></div>\n",
        escape(&input.generated_at),
        runs.join("")
    )
}

/// The experiment page; `tables` are (file stem, HTML fragment) in display order.
pub fn experiment_page(input: &ReportInput, tables: &[(String, String)]) -> String {
    let scale = if input.paper_scale {
        "paper scale"
    } else {
        "reduced scale (not comparable to the paper's numbers)"
    };
    let body = format!(
        "<p class=\"meta\"><a href=\"../index.html\">All experiments</a></p>\n\
         <h1>{title}</h1>\n<p>{description}</p>\n{training}{notice}\
         <p class=\"meta\">Experiment <code>{experiment}</code>, {scale}. Report generated \
         {generated} from commit <code>{commit}</code>; it re-renders from stored results \
         with <code>repro report</code>.</p>\n\
         <nav><ul><li><a href=\"#claims\">Claims and verdicts</a></li>\
         <li><a href=\"#figures\">Figures</a></li><li><a href=\"#tables\">Tables</a></li>\
         <li><a href=\"#runs\">What was run</a></li>\
         <li><a href=\"#deviations\">Deviations from the paper</a></li></ul></nav>\n\
         {claims}{figures}{tables}{runs}{deviations}",
        title = escape(&input.title),
        description = escape(&input.description),
        training = training_notice(input),
        notice = input
            .notice
            .as_deref()
            .map(|n| format!("<p class=\"notice\">{}</p>\n", escape(n)))
            .unwrap_or_default(),
        experiment = escape(&input.experiment),
        generated = escape(&input.generated_at),
        commit = escape(&input.commit),
        claims = claims_section(&input.claims),
        figures = figures_section(input),
        tables = tables_section(tables),
        runs = runs_section(&input.command, &input.runs),
        deviations = deviations_section(&input.deviations),
    );
    let reload = (!input.training.is_empty()).then_some(RELOAD_SECONDS);
    reloading_page(&input.title, &body, reload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Metric;
    use crate::store::MetricsRow;

    fn ending_at(top1: f64) -> Vec<MetricsRow> {
        vec![MetricsRow {
            epoch: 10.0,
            step: 100,
            images_seen: 3200,
            lr: 0.01,
            train_loss: 1.0,
            top1_err: Some(top1),
            top5_err: None,
            eval_images: 100,
            images_per_s: 1.0,
            wall_s: 1.0,
            pre_pool_zero_frac: None,
            pre_pool_dead_channel_frac: None,
        }]
    }

    #[test]
    fn each_curve_of_a_sweep_gets_its_final_error_over_its_seeds() {
        let series = |label: &str, seed, top1| Series {
            network: "inception_v4".into(),
            label: label.into(),
            seed,
            rows: ending_at(top1),
            status: "done".into(),
        };
        let figure = FigureInput {
            id: "ablation".into(),
            paper_figure: None,
            title: None,
            metric: Metric::Top1,
            overlay_paper: false,
            series: vec![
                series("v4/init=tf_slim", 0, 0.60),
                series("v4/init=tf_slim", 1, 0.64),
                series("v4/init=pytorch", 0, 0.50),
                series("v4/init=pytorch", 1, 0.50),
            ],
        };
        let html = final_error_table(&figure);
        assert!(
            html.contains("<td>v4/init=tf_slim</td><td class=\"num\">2</td><td class=\"num\">62.00 ± 2.83 (n = 2)</td>"),
            "{html}"
        );
        assert!(html.contains("50.00 ± 0.00 (n = 2)"), "{html}");
        assert!(series_table(&figure).contains("<td>v4/init=pytorch</td>"));
        // One run per curve: nothing to average, no table.
        let single = FigureInput {
            series: figure.series[..1].to_vec(),
            ..figure
        };
        assert_eq!(final_error_table(&single), "");
    }
}
