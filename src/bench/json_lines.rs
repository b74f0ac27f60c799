//! What the measurements print: one JSON object per line on stdout.

/// Prints `v` as one JSON line (or an error line when it cannot be serialised).
pub(crate) fn emit(v: &impl serde::Serialize) {
    match serde_json::to_string(v) {
        Ok(line) => println!("{line}"),
        Err(e) => println!(
            "{}",
            serde_json::json!({ "kind": "error", "error": e.to_string() })
        ),
    }
}
