//! Reads Lamina's tree as text for the invariant tests in `tests/it`: the workspace's
//! crates, their manifests and the lock file, Rust sources with comments and literals
//! told apart, and the code map of ARCHITECTURE.md.
//!
//! Everything here is a line-based reading of formats the repository writes in one
//! style (rustfmt'd Rust, `cargo`-written TOML), not a general parser: a tidy test has to
//! build in seconds and depend on nothing it checks. When a file outgrows these readers,
//! the tests fail loudly rather than pass by mistake.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

/// The repository root (the folder holding the workspace's `Cargo.toml`).
pub fn project_root() -> PathBuf {
    let tidy = Path::new(env!("CARGO_MANIFEST_DIR"));
    tidy.parent()
        .expect("the tidy crate lives one level below the repository root")
        .to_path_buf()
}

/// The contents of `path`, or a panic that names it.
pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `path` relative to the repository root, with `/` separators, as messages print it.
pub fn display(path: &Path) -> String {
    let root = project_root();
    let rel = path.strip_prefix(&root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The workspace members named in the root `Cargo.toml`, in its order. Each member's
/// folder is its name (STYLE.md), so a member is also a path.
pub fn workspace_members() -> Vec<String> {
    let text = read(&project_root().join("Cargo.toml"));
    let start = text
        .find("members = [")
        .expect("the root Cargo.toml lists `members = [...]`");
    let rest = &text[start + "members = [".len()..];
    let end = rest.find(']').expect("`members = [` is closed");
    rest[..end]
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

/// Folders never walked: build output, version control, the Python environment.
const SKIPPED_DIRS: &[&str] = &["target", ".git", ".venv", "node_modules", "__pycache__"];

/// Every file under `dir` whose name ends with `suffix`, sorted, skipping build output and
/// symlinks (`.venv` is one).
pub fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if kind.is_dir() {
                if !SKIPPED_DIRS.contains(&name.as_str()) {
                    todo.push(path);
                }
            } else if kind.is_file() && name.ends_with(suffix) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every `.rs` file under `dir`.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    files_with_suffix(dir, ".rs")
}

/// One dependency named in a `Cargo.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The package's name (the `package = "..."` of a renamed dependency).
    pub name: String,
    /// The table it is declared in, e.g. `dependencies` or `dev-dependencies`.
    pub table: String,
    /// 1-based line in the manifest.
    pub line: usize,
}

/// The dependencies a manifest declares, in every dependency table (normal, dev, build,
/// and per-target). Understands `name = ...`, `name.workspace = true` and
/// `[dependencies.name]`, the forms cargo documents.
pub fn manifest_dependencies(manifest: &str) -> Vec<Dependency> {
    let mut out = Vec::new();
    let mut table: Option<String> = None;
    for (i, raw) in manifest.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let header = header.trim();
            table = None;
            if header.ends_with("dependencies") {
                table = Some(header.to_string());
            } else if let Some((tbl, name)) = header.rsplit_once('.')
                && tbl.ends_with("dependencies")
            {
                // `[dependencies.name]`: the name is in the header.
                out.push(Dependency {
                    name: name.trim_matches('"').to_string(),
                    table: tbl.to_string(),
                    line: i + 1,
                });
            }
            continue;
        }
        let Some(table) = &table else { continue };
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let key = key
            .split_once('.')
            .map_or(key, |(k, _)| k)
            .trim_matches('"');
        let name = renamed_package(value).unwrap_or(key);
        out.push(Dependency {
            name: name.to_string(),
            table: table.clone(),
            line: i + 1,
        });
    }
    out
}

/// The `package = "..."` of an inline dependency table, if it renames the package.
fn renamed_package(value: &str) -> Option<&str> {
    let at = value.find("package")?;
    let rest = value[at + "package".len()..]
        .trim_start()
        .strip_prefix('=')?;
    let rest = rest.trim_start().strip_prefix('"')?;
    rest.split('"').next()
}

/// `Cargo.lock` as a graph: each package's name to the names it depends on (all versions
/// of a name merged, dev-dependencies included, as the lock file records them).
pub fn lock_graph(lock: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_deps = false;
    for line in lock.lines() {
        let line = line.trim();
        if line == "[[package]]" {
            current = None;
            in_deps = false;
        } else if let Some(name) = line.strip_prefix("name = ") {
            let name = name.trim_matches('"').to_string();
            graph.entry(name.clone()).or_default();
            current = Some(name);
        } else if line.starts_with("dependencies = [") {
            in_deps = !line.ends_with(']');
        } else if in_deps && line == "]" {
            in_deps = false;
        } else if in_deps && let Some(pkg) = &current {
            // `"name"` or `"name version"` or `"name version (source)"`.
            let dep = line.trim_end_matches(',').trim_matches('"');
            let dep = dep.split(' ').next().unwrap_or(dep).to_string();
            graph.entry(pkg.clone()).or_default().insert(dep);
        }
    }
    graph
}

/// The shortest chain of packages from `from` to a package `matches` accepts, not passing
/// through any package in `stop` (whose own edges are checked elsewhere).
pub fn find_chain(
    graph: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    stop: &BTreeSet<String>,
    matches: impl Fn(&str) -> bool,
) -> Option<Vec<String>> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(pkg) = queue.pop_front() {
        for dep in graph.get(pkg).into_iter().flatten() {
            if dep == from || parent.contains_key(dep.as_str()) || stop.contains(dep) {
                continue;
            }
            parent.insert(dep, pkg);
            if matches(dep) {
                let mut chain = vec![dep.clone()];
                let mut at = dep.as_str();
                while let Some(&p) = parent.get(at) {
                    chain.push(p.to_string());
                    at = p;
                }
                chain.reverse();
                return Some(chain);
            }
            queue.push_back(dep);
        }
    }
    None
}

/// A string literal of a Rust source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal {
    /// 1-based line where the literal opens.
    pub line: usize,
    /// The text between the quotes, escapes left as written.
    pub text: String,
}

/// A Rust source file split into code and string literals.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The code with comments (doc comments included) removed and every literal emptied;
    /// newlines are kept, so line numbers stay right.
    pub code: String,
    /// Every string literal (plain, raw and byte strings), in order.
    pub literals: Vec<Literal>,
}

impl Source {
    /// The 1-based line of byte offset `at` of [`Source::code`].
    pub fn line_of(&self, at: usize) -> usize {
        self.code[..at].matches('\n').count() + 1
    }

    /// Every place `needle` occurs in the code as a whole path or word (not as part of a
    /// longer identifier), with its line.
    pub fn find_token(&self, needle: &str) -> Vec<usize> {
        let bytes = self.code.as_bytes();
        let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        self.code
            .match_indices(needle)
            .filter(|&(at, _)| {
                let before = at.checked_sub(1).map(|i| bytes[i]);
                let after = bytes.get(at + needle.len()).copied();
                !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
            })
            .map(|(at, _)| self.line_of(at))
            .collect()
    }
}

/// Splits Rust source into code and string literals: line and block comments (nested) are
/// dropped, char literals and lifetimes told apart, raw strings read to their closing
/// hashes.
pub fn lex(text: &str) -> Source {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    let mut code = String::with_capacity(text.len());
    let mut literals = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < n {
        let c = chars[i];
        let prev_ident = i > 0 && ident(chars[i - 1]);
        if c == '/' && at(i + 1) == '/' {
            while i < n && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < n {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                        code.push('\n');
                    }
                    i += 1;
                }
            }
        } else if !prev_ident && let Some((open, hashes)) = raw_string_start(&chars, i) {
            let start_line = line;
            let mut j = open + 1;
            let mut body = String::new();
            while j < n {
                if chars[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#') {
                    break;
                }
                body.push(chars[j]);
                j += 1;
            }
            close_literal(&mut code, &mut line, &body);
            literals.push(Literal {
                line: start_line,
                text: body,
            });
            i = j + 1 + hashes;
        } else if c == '"' || (c == 'b' && at(i + 1) == '"' && !prev_ident) {
            let start_line = line;
            let mut j = if c == 'b' { i + 2 } else { i + 1 };
            let mut body = String::new();
            while j < n && chars[j] != '"' {
                if chars[j] == '\\' {
                    body.push(chars[j]);
                    j += 1;
                }
                if j < n {
                    body.push(chars[j]);
                }
                j += 1;
            }
            close_literal(&mut code, &mut line, &body);
            literals.push(Literal {
                line: start_line,
                text: body,
            });
            i = j + 1;
        } else if c == '\'' && at(i + 1) == '\\' {
            // An escaped char literal: '\n', '\'', '\u{1F600}'.
            let mut j = i + 3;
            while j < n && chars[j] != '\'' {
                j += 1;
            }
            code.push_str("' '");
            i = j + 1;
        } else if c == '\'' && at(i + 2) == '\'' {
            code.push_str("' '");
            i += 3;
        } else {
            if c == '\n' {
                line += 1;
            }
            code.push(c);
            i += 1;
        }
    }
    Source { code, literals }
}

/// If a raw string (`r"`, `r#"`, `br#"` ...) opens at `i`: the index of its `"` and the
/// number of hashes.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = chars[j..].iter().take_while(|&&c| c == '#').count();
    j += hashes;
    (chars.get(j) == Some(&'"')).then_some((j, hashes))
}

/// Writes an emptied literal into the code, keeping its newlines.
fn close_literal(code: &mut String, line: &mut usize, body: &str) {
    code.push('"');
    for _ in body.matches('\n') {
        code.push('\n');
        *line += 1;
    }
    code.push('"');
}

/// The SQL statement a string opens or contains, if any: uppercase keywords as the
/// repository writes SQL (`SELECT`, `INSERT INTO`, `UPDATE t SET`, `DELETE FROM`,
/// `CREATE`/`DROP`/`ALTER TABLE`, `CREATE`/`DROP DATABASE`), separated by any whitespace.
pub fn sql_statement(text: &str) -> Option<&'static str> {
    let words: Vec<&str> = text.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1).copied();
        let found = match (*w, next) {
            ("SELECT", Some(_)) => "SELECT",
            ("INSERT", Some("INTO")) => "INSERT INTO",
            ("DELETE", Some("FROM")) => "DELETE FROM",
            ("CREATE", Some("TABLE" | "INDEX" | "DATABASE")) => "CREATE",
            ("DROP", Some("TABLE" | "INDEX" | "DATABASE")) => "DROP",
            ("ALTER", Some("TABLE")) => "ALTER TABLE",
            ("UPDATE", Some(_)) if words.get(i + 2) == Some(&"SET") => "UPDATE ... SET",
            _ => continue,
        };
        return Some(found);
    }
    None
}

/// One crate's bullet in ARCHITECTURE.md's `## Code map`.
#[derive(Debug, Clone, Default)]
pub struct CodeMapEntry {
    /// The crate, from the bullet's first backticked token (`` `worker/` ``).
    pub krate: String,
    /// 1-based line of ARCHITECTURE.md where the bullet starts.
    pub line: usize,
    /// Every backticked path the bullet names, relative to the crate's `src/`: files end
    /// in `.rs`, folders in `/`. With the line each is on.
    pub paths: Vec<(String, usize)>,
}

/// The crate bullets of ARCHITECTURE.md's `## Code map` section.
///
/// The convention the map follows: a bullet starts at column 0 with `- ` and its first
/// backticked token is a workspace crate's folder (`` `gateway/` ``). Inside it, every
/// backticked token made only of path characters and ending in `.rs` (a file) or `/` (a
/// folder) is a path relative to that crate's `src/`; other tokens (types, commands,
/// other crates' folders such as `` `worker/` ``) are prose. Bullets of folders that are
/// not workspace crates (`wit/`, `deploy/`, ...) are not read. Two bullets of one crate
/// are merged.
pub fn code_map(architecture: &str, crates: &[String]) -> Vec<CodeMapEntry> {
    let mut entries: Vec<CodeMapEntry> = Vec::new();
    let mut in_map = false;
    let mut current: Option<usize> = None;
    for (i, line) in architecture.lines().enumerate() {
        let lineno = i + 1;
        if line.starts_with("## ") {
            in_map = line.trim() == "## Code map";
            current = None;
            continue;
        }
        if !in_map {
            continue;
        }
        if let Some(rest) = line.strip_prefix("- ") {
            current = None;
            let first = rest.split('`').nth(1).unwrap_or("");
            if let Some(krate) = first.strip_suffix('/')
                && crates.iter().any(|c| c == krate)
            {
                let at = entries.iter().position(|e| e.krate == krate);
                let at = at.unwrap_or_else(|| {
                    entries.push(CodeMapEntry {
                        krate: krate.to_string(),
                        line: lineno,
                        paths: Vec::new(),
                    });
                    entries.len() - 1
                });
                current = Some(at);
                // The crate token itself is not a path inside the crate.
                let rest = rest.splitn(3, '`').nth(2).unwrap_or("");
                collect_paths(rest, lineno, crates, &mut entries[at].paths);
            }
        } else if let Some(at) = current {
            collect_paths(line, lineno, crates, &mut entries[at].paths);
        }
    }
    entries
}

/// Adds the backticked path tokens of one line (see [`code_map`]).
fn collect_paths(line: &str, lineno: usize, crates: &[String], out: &mut Vec<(String, usize)>) {
    let path_char = |c: char| c.is_ascii_alphanumeric() || "_-./".contains(c);
    for token in line.split('`').skip(1).step_by(2) {
        let is_path = !token.is_empty()
            && token.chars().all(path_char)
            && (token.ends_with(".rs") || token.ends_with('/'));
        let is_crate = token
            .strip_suffix('/')
            .is_some_and(|t| crates.iter().any(|c| c == t));
        if is_path && !is_crate {
            out.push((token.to_string(), lineno));
        }
    }
}

/// The files under `src` that are compiled only for the crate's own tests: modules
/// declared right after a `#[cfg(test)]` line with `mod name;`.
pub fn test_only_modules(src: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for file in rust_files(src) {
        let text = read(&file);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for pair in lines.windows(2) {
            if pair[0] != "#[cfg(test)]" {
                continue;
            }
            let decl = pair[1].strip_prefix("pub ").unwrap_or(pair[1]);
            let Some(name) = decl.strip_prefix("mod ").and_then(|d| d.strip_suffix(';')) else {
                continue;
            };
            let dir = file.parent().unwrap_or(src);
            let stem = file.file_stem().unwrap_or_default().to_string_lossy();
            let dir = if matches!(stem.as_ref(), "lib" | "main" | "mod") {
                dir.to_path_buf()
            } else {
                dir.join(stem.as_ref())
            };
            out.insert(dir.join(format!("{name}.rs")));
            out.insert(dir.join(name).join("mod.rs"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexer_separates_comments_strings_and_chars() {
        let src = lex(concat!(
            "// tokio in a comment\n",
            "/* nested /* tokio */ still */ let a = \"tokio \\\" x\";\n",
            "let b = r#\"SELECT \"1\" FROM t\"#; let c = '\"'; let d: &'static str = \"\";\n",
            "let e = b\"bytes\"; fn f<'a>(x: &'a str) {}\n",
        ));
        assert!(src.find_token("tokio").is_empty(), "{}", src.code);
        let texts: Vec<&str> = src.literals.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["tokio \\\" x", "SELECT \"1\" FROM t", "", "bytes"]);
        assert_eq!(src.literals[1].line, 3);
        assert_eq!(src.find_token("f"), [4]);
        assert!(src.code.contains("'a str"));
    }

    #[test]
    fn tokens_match_whole_words_only() {
        let src = lex("use tokio_util; let x = mytokio; tokio::spawn();\n");
        assert_eq!(src.find_token("tokio"), [1]);
        assert_eq!(lex("a::Instant::now()").find_token("Instant::now"), [1]);
        assert!(
            lex("Instant::nowhere")
                .find_token("Instant::now")
                .is_empty()
        );
    }

    #[test]
    fn sql_is_recognised_by_its_statement_keywords() {
        let yes = [
            "SELECT 1",
            "SELECT\n  id FROM x",
            "INSERT INTO t VALUES (?)",
            "UPDATE events SET state = 1",
            "DELETE FROM t",
            "CREATE TABLE x (id INT)",
            "CREATE DATABASE {name}",
        ];
        for s in yes {
            assert!(sql_statement(s).is_some(), "{s}");
        }
        let no = [
            "select a version",
            "SELECT",
            "UPDATE",
            "the INSERT key",
            "Update the alias",
        ];
        for s in no {
            assert_eq!(sql_statement(s), None, "{s}");
        }
    }

    #[test]
    fn manifests_and_lock_files_are_read() {
        let deps = manifest_dependencies(concat!(
            "[package]\nname = \"x\"\n\n[dependencies]\n# comment\nprotocol.workspace = true\n",
            "tokio = { workspace = true, features = [\"fs\"] }\nengine = { package = \"wasmtime\", version = \"1\" }\n",
            "\n[dev-dependencies]\ntempfile = \"3\"\n\n[target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n",
            "\n[dependencies.sqlx]\nversion = \"0.9\"\n\n[lints]\nworkspace = true\n",
        ));
        let names: Vec<(&str, &str)> = deps
            .iter()
            .map(|d| (d.name.as_str(), d.table.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("protocol", "dependencies"),
                ("tokio", "dependencies"),
                ("wasmtime", "dependencies"),
                ("tempfile", "dev-dependencies"),
                ("libc", "target.'cfg(unix)'.dependencies"),
                ("sqlx", "dependencies"),
            ]
        );

        let graph = lock_graph(concat!(
            "[[package]]\nname = \"gateway\"\nversion = \"0.1.0\"\ndependencies = [\n \"foo\",\n \"protocol\",\n]\n\n",
            "[[package]]\nname = \"foo\"\nversion = \"1.0.0\"\ndependencies = [\n \"wasmtime 48.0.8\",\n]\n\n",
            "[[package]]\nname = \"protocol\"\nversion = \"0.1.0\"\n",
        ));
        let stop = BTreeSet::from(["protocol".to_string()]);
        let chain = find_chain(&graph, "gateway", &stop, |p| p.starts_with("wasmtime"));
        assert_eq!(
            chain,
            Some(vec![
                "gateway".to_string(),
                "foo".to_string(),
                "wasmtime".to_string()
            ])
        );
    }

    #[test]
    fn code_map_reads_crate_bullets_only() {
        let crates = ["worker".to_string(), "gateway".to_string()];
        let map = code_map(
            concat!(
                "## Code map\n\n- `worker/` — the only crate. `engine.rs` (one `Engine`),\n",
                "  `nn/` and `a b.rs` and `protocol/` and `worker/`.\n",
                "- `wit/` — `handler.wit`, `x.rs`.\n- `gateway/` — `api/reports.rs`.\n\n",
                "## Invariants\n- `worker/` `y.rs`\n",
            ),
            &crates,
        );
        let got: Vec<(&str, Vec<&str>)> = map
            .iter()
            .map(|e| {
                let paths = e.paths.iter().map(|(p, _)| p.as_str()).collect();
                (e.krate.as_str(), paths)
            })
            .collect();
        assert_eq!(
            got,
            [
                ("worker", vec!["engine.rs", "nn/", "protocol/"]),
                ("gateway", vec!["api/reports.rs"]),
            ]
        );
        assert_eq!(map[0].paths[1].1, 4);
    }
}
