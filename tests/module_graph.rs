//! The import graph of src/: no two files import each other (no cycle of any length), and no
//! two top-level folders do. `cargo test --release --test module_graph` checks it; with
//! `-- --nocapture` it also prints each top-level module's dependencies.
//!
//! Imports are read from the source text: every `crate::`, `super::` and `self::` path (in `use`
//! trees and inline), and paths through a child module the file declares. A path is resolved to
//! the file that defines the item: a `mod.rs` or `lib.rs` that only re-exports an item
//! (`pub use child::Item`) is looked through, so a folder's public face is not a file of its own.
//! `mod x;` declarations are not imports, and `#[cfg(test)]` test files count like any other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path from the crate root: `["models", "network"]`.
type ModPath = Vec<String>;

struct SourceFile {
    path: PathBuf,
    module: ModPath,
    /// Source with comments and string/char literals blanked out.
    code: String,
}

#[test]
fn no_two_files_and_no_two_top_level_folders_import_each_other() {
    let graph = Graph::of(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").as_path());
    assert!(
        graph.files.len() > 100,
        "found only {} source files: the walk is broken",
        graph.files.len()
    );
    assert!(
        graph.edges.values().map(BTreeSet::len).sum::<usize>() > 200,
        "found almost no imports: the parser is broken"
    );

    let file_cycles = cycles(&graph.edges);
    let folder_edges = graph.folder_edges();
    for (from, to) in &folder_edges {
        println!(
            "{from} -> {}",
            to.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let folder_cycles = cycles(&folder_edges);
    let mut problems = Vec::new();
    for c in &file_cycles {
        problems.push(format!(
            "files import each other: {}\n{}",
            c.join(" <-> "),
            graph.evidence(c)
        ));
    }
    for c in &folder_cycles {
        problems.push(format!(
            "top-level modules import each other: {}\n{}",
            c.join(" <-> "),
            graph.folder_evidence(c)
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn the_checker_finds_a_cycle_through_a_re_export() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |p: &str, text: &str| {
        let path = src.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod a;\npub mod b;\n");
    write(
        "a/mod.rs",
        "mod x;\nmod y;\npub use x::Thing;\npub use y::Other;\n",
    );
    // "crate::a::Thing" in a comment or a string is not an import.
    write(
        "a/x.rs",
        "// crate::b::Nope\nuse super::Other;\npub struct Thing; const S: &str = \"crate::b::Z\";",
    );
    write(
        "a/y.rs",
        "use crate::a::{Thing, x::Thing as T2};\npub struct Other;",
    );
    write("b/mod.rs", "pub fn f() { let _ = crate::a::Thing; }");
    let graph = Graph::of(src);
    let file_cycles = cycles(&graph.edges);
    assert_eq!(
        file_cycles,
        vec![vec!["a/x.rs".to_string(), "a/y.rs".to_string()]]
    );
    let folders = graph.folder_edges();
    assert_eq!(folders["b"], BTreeSet::from(["a".to_string()]));
    assert!(
        !folders.contains_key("a"),
        "comments and strings are not imports"
    );
    assert!(cycles(&folders).is_empty());
}

struct Graph {
    files: Vec<SourceFile>,
    /// File (relative to src/) → the files it imports from.
    edges: BTreeMap<String, BTreeSet<String>>,
    /// (from, to) → the paths that made the edge, for the failure message.
    why: BTreeMap<(String, String), BTreeSet<String>>,
}

impl Graph {
    fn of(src: &Path) -> Graph {
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(src).sort_by_file_name() {
            let entry = entry.unwrap();
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().to_path_buf();
            if rel == Path::new("main.rs") {
                continue; // the binary: it may use anything
            }
            let text = std::fs::read_to_string(path).unwrap();
            files.push(SourceFile {
                module: module_of(&rel),
                path: rel,
                code: strip_comments_and_literals(&text),
            });
        }
        let modules: BTreeMap<ModPath, usize> = files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.module.clone(), i))
            .collect();
        let reexports: Vec<BTreeMap<String, ModPath>> =
            files.iter().map(|f| reexports_of(f, &modules)).collect();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut why: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for (i, f) in files.iter().enumerate() {
            let from = display(&f.path);
            for path in imported_paths(f) {
                let Some(target) = resolve(&path, &modules, &reexports, 0) else {
                    continue;
                };
                if target == i {
                    continue;
                }
                let to = display(&files[target].path);
                edges.entry(from.clone()).or_default().insert(to.clone());
                why.entry((from.clone(), to))
                    .or_default()
                    .insert(path.join("::"));
            }
        }
        Graph { files, edges, why }
    }

    /// Top-level module → the top-level modules it imports from (crate-root files such as
    /// lib.rs are left out: they only declare the modules).
    fn folder_edges(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, tos) in &self.edges {
            for to in tos {
                let (a, b) = (top_level(from), top_level(to));
                if let (Some(a), Some(b)) = (a, b) {
                    if a != b {
                        out.entry(a).or_default().insert(b);
                    }
                }
            }
        }
        out
    }

    fn evidence(&self, cycle: &[String]) -> String {
        let mut lines = Vec::new();
        for from in cycle {
            for to in cycle {
                if let Some(paths) = self.why.get(&(from.clone(), to.clone())) {
                    let paths: Vec<_> = paths.iter().cloned().collect();
                    lines.push(format!("  {from} -> {to}: {}", paths.join(", ")));
                }
            }
        }
        lines.join("\n")
    }

    fn folder_evidence(&self, cycle: &[String]) -> String {
        let mut lines = Vec::new();
        for ((from, to), paths) in &self.why {
            let (a, b) = (top_level(from), top_level(to));
            if let (Some(a), Some(b)) = (a, b) {
                if a != b && cycle.contains(&a) && cycle.contains(&b) {
                    let paths: Vec<_> = paths.iter().cloned().collect();
                    lines.push(format!("  {from} -> {to}: {}", paths.join(", ")));
                }
            }
        }
        lines.join("\n")
    }
}

fn display(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "/")
}

/// `models/network.rs` → `models`; `device.rs` → `device`; `lib.rs` → none.
fn top_level(file: &str) -> Option<String> {
    match file.split_once('/') {
        Some((folder, _)) => Some(folder.to_string()),
        None if file == "lib.rs" => None,
        None => Some(file.trim_end_matches(".rs").to_string()),
    }
}

fn module_of(rel: &Path) -> ModPath {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    match last.as_str() {
        "mod.rs" | "lib.rs" => {}
        name => parts.push(name.trim_end_matches(".rs").to_string()),
    }
    parts
}

/// Child modules a file declares (`mod x;`, `pub(crate) mod x;`, `mod x {`).
fn declared_children(code: &str) -> BTreeSet<String> {
    let tokens = tokens(code);
    let mut out = BTreeSet::new();
    for w in tokens.windows(2) {
        if w[0] == "mod" && is_ident(&w[1]) {
            out.insert(w[1].clone());
        }
    }
    out
}

/// Every path the file names from this crate, made absolute.
fn imported_paths(f: &SourceFile) -> Vec<ModPath> {
    let children = declared_children(&f.code);
    let toks = tokens(&f.code);
    let mut out = Vec::new();
    // Inline modules (`mod tests { ... }`): their name and the brace depth inside them.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i].as_str();
        match t {
            "{" => depth += 1,
            "}" => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth -= 1;
            }
            "mod" if toks.get(i + 2).map(String::as_str) == Some("{") => {
                inline.push((toks[i + 1].clone(), depth + 1));
            }
            _ => {}
        }
        let mut module = f.module.clone();
        module.extend(inline.iter().map(|(name, _)| name.clone()));
        let inside_inline = !inline.is_empty();
        let starts_path = (t == "crate" || t == "super" || t == "self")
            || (children.contains(t) && toks.get(i + 1).map(String::as_str) == Some("::"));
        let after_path_sep = i > 0 && toks[i - 1] == "::";
        if starts_path && !after_path_sep && toks.get(i + 1).map(String::as_str) == Some("::") {
            let base = match t {
                "crate" => Vec::new(),
                "self" => module.clone(),
                "super" => {
                    let mut m = module.clone();
                    m.pop();
                    m
                }
                child => {
                    let mut m = module.clone();
                    m.push(child.to_string());
                    m
                }
            };
            let start = out.len();
            i = parse_tree(&toks, i + 2, base, &mut out);
            if inside_inline {
                // Paths into the inline module itself name the file's own items.
                for p in &mut out[start..] {
                    if p.starts_with(&module) {
                        p.truncate(f.module.len());
                    }
                }
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Parses a path or use tree starting at `toks[i]` (after `prefix::`); returns the index after it.
fn parse_tree(toks: &[String], mut i: usize, mut prefix: ModPath, out: &mut Vec<ModPath>) -> usize {
    loop {
        match toks.get(i).map(String::as_str) {
            Some("{") => {
                i += 1;
                loop {
                    match toks.get(i).map(String::as_str) {
                        Some("}") => return i + 1,
                        Some(",") => i += 1,
                        Some("self") => {
                            out.push(prefix.clone());
                            i += 1;
                        }
                        Some(_) => i = parse_tree(toks, i, prefix.clone(), out),
                        None => return i,
                    }
                }
            }
            Some("super") => {
                prefix.pop();
                i += 1;
            }
            Some("*") => {
                out.push(prefix);
                return i + 1;
            }
            Some(t) if is_ident(t) => {
                prefix.push(t.to_string());
                i += 1;
            }
            _ => {
                if !prefix.is_empty() {
                    out.push(prefix);
                }
                return i;
            }
        }
        match toks.get(i).map(String::as_str) {
            Some("::") => i += 1,
            Some("as") => {
                out.push(prefix);
                return i + 2; // `Item as Name`
            }
            _ => {
                out.push(prefix);
                return i;
            }
        }
    }
}

/// For a file with `pub use child::...::Item [as Name]`: Name → the path it re-exports.
fn reexports_of(f: &SourceFile, modules: &BTreeMap<ModPath, usize>) -> BTreeMap<String, ModPath> {
    let toks = tokens(&f.code);
    let children = declared_children(&f.code);
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i + 1 < toks.len() {
        let is_pub_use = toks[i] == "pub"
            && (toks[i + 1] == "use"
                || (toks[i + 1] == "(" && toks.get(i + 4).map(String::as_str) == Some("use")));
        if !is_pub_use {
            i += 1;
            continue;
        }
        let mut j = if toks[i + 1] == "use" { i + 2 } else { i + 5 };
        let base = match toks[j].as_str() {
            "crate" => Vec::new(),
            "self" => f.module.clone(),
            "super" => {
                let mut m = f.module.clone();
                m.pop();
                m
            }
            c if children.contains(c) => f.module.clone(),
            _ => {
                i = j;
                continue;
            }
        };
        if ["crate", "self", "super"].contains(&toks[j].as_str()) {
            j += 2;
        }
        let mut paths = Vec::new();
        let end = parse_tree(&toks, j, base, &mut paths);
        // `as` renames: `Item as Name` gives the last segment as written after `as`.
        let renames: Vec<(usize, String)> = (j..end)
            .filter(|&k| toks[k] == "as")
            .map(|k| (k, toks[k + 1].clone()))
            .collect();
        for p in paths {
            let Some(name) = p.last().cloned() else {
                continue;
            };
            if modules.contains_key(&p) {
                continue; // a module re-exported as a whole: resolved through `modules`
            }
            let shown = renames
                .iter()
                .find(|(k, _)| toks[k - 1] == name)
                .map(|(_, n)| n.clone())
                .unwrap_or(name);
            out.insert(shown, p);
        }
        i = end;
    }
    out
}

/// The file that defines what `path` names.
fn resolve(
    path: &ModPath,
    modules: &BTreeMap<ModPath, usize>,
    reexports: &[BTreeMap<String, ModPath>],
    depth: usize,
) -> Option<usize> {
    let mut cur: ModPath = Vec::new();
    let mut rest = path.iter();
    let mut item = None;
    for seg in rest.by_ref() {
        let mut next = cur.clone();
        next.push(seg.clone());
        if modules.contains_key(&next) {
            cur = next;
        } else {
            item = Some(seg.clone());
            break;
        }
    }
    let file = *modules.get(&cur)?;
    if let Some(item) = item {
        if let Some(target) = reexports[file].get(&item) {
            if depth < 8 && target != path {
                return resolve(target, modules, reexports, depth + 1);
            }
        }
    }
    Some(file)
}

fn is_ident(t: &str) -> bool {
    let mut chars = t.chars();
    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// Identifiers, `::` and single punctuation characters.
fn tokens(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// Blanks comments, string literals (plain, raw, byte) and char literals, keeping lifetimes.
fn strip_comments_and_literals(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < c.len() {
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c[i] == 'r'
            && (c.get(i + 1) == Some(&'"') || c.get(i + 1) == Some(&'#'))
            && (i == 0 || !(c[i - 1].is_alphanumeric() || c[i - 1] == '_'))
        {
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            j += 1;
            'raw: while j < c.len() {
                if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break 'raw;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c[i] == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if c.get(i + 1) == Some(&'\\') {
                let mut j = i + 2;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c[i]);
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Strongly connected components with more than one member (each sorted), by Tarjan's algorithm.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = edges
        .keys()
        .chain(edges.values().flat_map(|s| s.iter()))
        .collect();
    let nodes: Vec<&String> = nodes.into_iter().collect();
    let index_of: BTreeMap<&String, usize> =
        nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let succ: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| {
            edges
                .get(*n)
                .map(|s| s.iter().map(|t| index_of[t]).collect())
                .unwrap_or_default()
        })
        .collect();
    struct State {
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(v: usize, succ: &[Vec<usize>], s: &mut State) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &succ[v] {
            match s.index[w] {
                None => {
                    visit(w, succ, s);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                _ => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let n = nodes.len();
    let mut s = State {
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(v, &succ, &mut s);
        }
    }
    let mut out: Vec<Vec<String>> = s
        .out
        .into_iter()
        .map(|c| {
            let mut names: Vec<String> = c.into_iter().map(|i| nodes[i].clone()).collect();
            names.sort();
            names
        })
        .collect();
    out.sort();
    out
}
