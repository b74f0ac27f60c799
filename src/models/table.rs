//! The plain-text model table of `repro models` and the README.

use super::network::Summary;

fn millions(n: u64) -> String {
    format!("{:.2} M", n as f64 / 1e6)
}

fn giga(n: u64) -> String {
    format!("{:.3} G", n as f64 / 1e9)
}

/// One row per network, then the per-stage feature maps (C×H×W) of each.
pub fn render_table(summaries: &[Summary]) -> String {
    let mut out = String::new();
    if let Some(first) = summaries.first() {
        out.push_str(&format!(
            "input {0}x{0} px, width x{1}, {2} classes\n\n",
            first.image_size, first.width, first.num_classes
        ));
    }
    out.push_str(&format!(
        "{:<22} {:>14} {:>10}\n",
        "model", "params", "MACs"
    ));
    for s in summaries {
        out.push_str(&format!(
            "{:<22} {:>14} {:>10}\n",
            s.name,
            group_digits(s.params),
            giga(s.macs)
        ));
    }
    for s in summaries {
        out.push_str(&format!("\n{}\n", s.name));
        out.push_str(&format!(
            "  {:<13} {:>16} {:>12} {:>10}\n",
            "stage", "output", "params", "MACs"
        ));
        for st in &s.stages {
            let shape = format!("{}x{}x{}", st.output.c, st.output.h, st.output.w);
            out.push_str(&format!(
                "  {:<13} {:>16} {:>12} {:>10}\n",
                st.name,
                shape,
                millions(st.params),
                giga(st.macs)
            ));
        }
    }
    out
}

/// 23834568 → "23,834,568".
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{summarize, Arch, ModelConfig};

    #[test]
    fn digits_are_grouped_by_thousands() {
        assert_eq!(group_digits(23_834_568), "23,834,568");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
    }

    #[test]
    fn table_lists_every_network_and_its_stages() {
        let s: Vec<_> = [Arch::InceptionV3, Arch::InceptionV4]
            .iter()
            .map(|a| summarize(&ModelConfig::new(*a), 299).unwrap())
            .collect();
        let t = render_table(&s);
        let row = t.lines().find(|l| l.starts_with("inception_v3 ")).unwrap();
        assert!(
            row.contains(" 23,834,568 ") && row.ends_with("5.713 G"),
            "{t}"
        );
        assert!(t.contains("1536x8x8"), "{t}");
        assert!(t.contains("35x35"), "{t}");
    }
}
