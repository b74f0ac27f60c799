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
    #[error("{}: run `{run}`: {message}", path.display())]
    Run {
        path: PathBuf,
        run: String,
        message: String,
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
