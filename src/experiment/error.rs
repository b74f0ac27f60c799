//! Errors in experiment files. Each names the file and, where the YAML parser knows it, the
//! line and column, and says what was expected.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{}: include `{include}` not found (looked for {})", path.display(), resolved.display())]
    MissingInclude {
        path: PathBuf,
        include: String,
        resolved: PathBuf,
    },
    #[error("{}: include cycle: {}", path.display(), chain.join(" -> "))]
    IncludeCycle { path: PathBuf, chain: Vec<String> },
    #[error("{}: environment variable `{var}` is not set (used in `{key}`; set it or write `${{{var}:-default}}`)", path.display())]
    MissingEnv {
        path: PathBuf,
        var: String,
        key: String,
    },
    #[error("--set {arg}: {message}")]
    Override { arg: String, message: String },
    /// A run's settings are wrong; `at` is the file and line that set the value, when it is
    /// not the experiment file itself (an included file).
    #[error("{}", run_error_text(path, run, message, at.as_ref()))]
    Run {
        path: PathBuf,
        run: String,
        message: String,
        at: Option<(PathBuf, usize)>,
    },
}

impl SpecError {
    /// A serde_yaml error on `path`, with its position when the parser has one.
    pub(crate) fn from_yaml(path: &std::path::Path, err: serde_yaml::Error) -> Self {
        let message = strip_position(&err.to_string());
        match err.location() {
            Some(loc) => SpecError::Parse {
                path: path.into(),
                line: loc.line(),
                column: loc.column(),
                message,
            },
            None => SpecError::Invalid {
                path: path.into(),
                message,
            },
        }
    }
}

/// serde_yaml appends " at line L column C" to its messages; the position is reported in
/// front instead, as compilers do.
pub(crate) fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => message[..i].to_string(),
        _ => message.to_string(),
    }
}

fn run_error_text(
    path: &std::path::Path,
    run: &str,
    message: &str,
    at: Option<&(PathBuf, usize)>,
) -> String {
    match at {
        Some((file, line)) => format!(
            "{}:{line}: run `{run}`: {message} (read by {})",
            file.display(),
            path.display()
        ),
        None => format!("{}: run `{run}`: {message}", path.display()),
    }
}

/// Where the setting an error message starts with (`train.epochs must be positive, got -1`)
/// is written among `sources`: the one line that sets its last key (to the value after `got`,
/// when the message gives one). `None` when no line or several lines could be it.
pub(crate) fn locate_setting(sources: &[PathBuf], message: &str) -> Option<(PathBuf, usize)> {
    let key: String = message
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .collect();
    let last = key.rsplit('.').next().filter(|_| key.contains('.'))?;
    let value = message
        .rsplit_once("got ")
        .map(|(_, v)| v.trim_end_matches([')', '.']).trim());
    unique_line(sources, |code| sets(code, last, value).then_some(0))
        .map(|(file, line, _)| (file, line))
}

/// Whether a YAML line sets `key` (block or flow style), to `value` when one is given.
fn sets(line: &str, key: &str, value: Option<&str>) -> bool {
    line.match_indices(key).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let starts = before.is_none_or(|c| c.is_whitespace() || c == '{' || c == ',');
        let rest = line[i + key.len()..].trim_start();
        let Some(after) = rest.strip_prefix(':') else {
            return false;
        };
        let after = after.trim_start();
        starts
            && value.is_none_or(|v| {
                after.starts_with(v)
                    && !after[v.len()..]
                        .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '.')
            })
    })
}

/// The one line among `sources` that contains `needle` (outside comments): file, line and
/// column, counted from 1.
pub(crate) fn locate_text(sources: &[PathBuf], needle: &str) -> Option<(PathBuf, usize, usize)> {
    unique_line(sources, |code| code.find(needle))
}

/// The one line among `sources` whose code (the text before a ` #` comment) `matches`, with
/// the column it gives (from 0; reported from 1); `None` when no line or several do.
fn unique_line(
    sources: &[PathBuf],
    matches: impl Fn(&str) -> Option<usize>,
) -> Option<(PathBuf, usize, usize)> {
    let mut found = Vec::new();
    for file in sources {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            let code = line.split(" #").next().unwrap_or(line);
            if let Some(col) = matches(code) {
                found.push((file.clone(), i + 1, col + 1));
            }
        }
    }
    match found.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}
