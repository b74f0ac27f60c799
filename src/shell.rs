//! Command lines as a POSIX shell reads them, for scripts and for commands shown to users.

/// `args` as one POSIX shell line, each quoted where needed.
pub fn shell_line(args: &[String]) -> String {
    args.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `a` quoted for a POSIX shell: as it is when it holds only safe characters, else in single
/// quotes.
pub fn shell_quote(a: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !a.is_empty() && a.chars().all(safe) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        let args: Vec<String> = ["plain", "with space", "it's", "", "$HOME", "a=b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let line = shell_line(&args);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("for a in {line}; do printf '<%s>' \"$a\"; done"))
            .output()
            .expect("sh");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "<plain><with space><it's><><$HOME><a=b>"
        );
    }
}
