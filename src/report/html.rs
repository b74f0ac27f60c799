//! HTML building blocks: escaping, safe file and link names, and the static page frame
//! (inline CSS only; no scripts, fonts or anything fetched from a network).

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A file stem made of `[A-Za-z0-9._-]` only (others become `_`), never empty or a
/// dot-name, so it is a safe file name and needs no escaping in a link.
pub fn file_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.is_empty() || stem.starts_with('.') {
        format!("_{stem}")
    } else {
        stem
    }
}

/// Percent-encodes one path segment of a relative link.
pub fn url_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

const CSS: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.not-run td { color: #888; font-style: italic; }
figure { margin: 1em 0 2em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
.wide { overflow-x: auto; }
figcaption { font-size: 0.92em; color: #444; margin-top: 0.3em; }
pre { background: #f6f6f6; padding: 0.7em; overflow-x: auto; font-size: 0.85em; }
code { background: #f6f6f6; padding: 0 0.2em; }
.meta { color: #555; font-size: 0.92em; }
.notice { background: #fff4d6; border-left: 4px solid #d9a400; padding: 0.5em 0.8em; }
.live { background: #e3effc; border-left: 4px solid #1f6fc5; padding: 0.5em 0.8em; }
.verdict { font-weight: bold; padding: 0.1em 0.4em; border-radius: 3px; white-space: nowrap; }
.verdict.supported { background: #d9f2d9; color: #14591b; }
.verdict.not-supported { background: #f8d7d7; color: #7a1212; }
.verdict.inconclusive { background: #eee; color: #444; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
.plots figure { flex: 1 1 420px; margin: 0.5em 0; }
nav ul { columns: 2; }
";

/// A complete static HTML page with `title` and the (already escaped) `body`.
pub fn page(title: &str, body: &str) -> String {
    reloading_page(title, body, None)
}

/// [`page`], which the browser reloads every `reload_s` seconds when given (a page
/// rendered again while runs train; still no script).
pub fn reloading_page(title: &str, body: &str, reload_s: Option<u32>) -> String {
    let reload = reload_s
        .map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">\n"))
        .unwrap_or_default();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n{reload}\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n",
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("inception_v4-seed1"), "inception_v4-seed1");
        assert_eq!(file_stem("a b/c<d>"), "a_b_c_d_");
        assert_eq!(file_stem(".."), "_..");
        assert_eq!(file_stem(""), "_");
    }

    #[test]
    fn url_segments_are_percent_encoded() {
        assert_eq!(url_segment("fig 23&x"), "fig%2023%26x");
        assert_eq!(url_segment("ok-name_1.0"), "ok-name_1.0");
    }

    #[test]
    fn page_escapes_its_title() {
        let html = page("a < b", "<p>x</p>");
        assert!(html.contains("<title>a &lt; b</title>"));
        assert!(html.contains("<p>x</p>"));
        assert!(!html.contains("<script"));
    }
}
