//! Taste enforced by machine (STYLE.md habit 12): the deterministic core imports nothing that
//! could make replicas diverge, openraft stays inside `src/raft/`, and no stubs or debug
//! macros are left in `src/`.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Lines of code with `//` comments removed, so docs may name what code may not use.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("").to_string()))
        .collect()
}

/// Whether `word` occurs in `line` not as part of a longer identifier ("monotonic" does not
/// use tonic).
fn contains_word(line: &str, word: &str) -> bool {
    // A pattern that starts with punctuation (`::now(`) matches anywhere.
    if !word.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
        return line.contains(word);
    }
    line.match_indices(word).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

fn violations(dir: &str, banned: &[&str], skip: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for file in rust_files(&root.join(dir)) {
        let rel = file.strip_prefix(root).unwrap().display().to_string();
        if skip.iter().any(|s| rel.starts_with(s)) {
            continue;
        }
        for (n, line) in code_lines(&file) {
            for word in banned {
                if contains_word(&line, word) {
                    found.push(format!("{rel}:{n}: uses {word}"));
                }
            }
        }
    }
    found
}

/// `src/machine/` has no clock (no `::now(` of any clock: std, chrono, tokio), unseeded
/// randomness, hash-ordered maps, async runtime or I/O crates (a PRNG seeded from replicated
/// values is allowed).
#[test]
fn tidy_machine_is_deterministic() {
    let banned = [
        "SystemTime",
        "Instant",
        "::now(",
        "Local::",
        "elapsed(",
        "UNIX_EPOCH",
        "thread_rng",
        "rand::rng",
        "rand::random",
        "from_entropy",
        "from_os_rng",
        "OsRng",
        "HashMap",
        "HashSet",
        "tokio",
        "sled",
        "tonic",
        "openraft",
        "std::fs",
        "std::net",
        "std::env",
    ];
    let found = violations(
        "src/machine",
        &banned,
        &["src/machine/golden.rs", "src/machine/model/"],
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// Only `src/raft/` names openraft.
#[test]
fn tidy_openraft_only_in_raft() {
    let found = violations("src", &["openraft::", "use openraft"], &["src/raft/"]);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// No stubs, debug macros or unbounded channels anywhere in `src/`.
#[test]
fn tidy_no_stubs_or_unbounded_channels() {
    // Spelled in pieces so this file does not itself contain the macros it bans.
    let (dbg, todo, unimpl) = (
        concat!("dbg", "!("),
        concat!("todo", "!("),
        concat!("unimplemented", "!("),
    );
    let banned = [dbg, todo, unimpl, "unbounded_channel"];
    let found = violations("src", &banned, &[]);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The matcher the tidy checks rely on finds what they ban and spares what they allow.
#[test]
fn tidy_matcher_finds_clocks_and_words() {
    assert!(contains_word("let t = chrono::Utc::now();", "::now("));
    assert!(contains_word("let t = Instant::now();", "Instant"));
    assert!(!contains_word("let monotonic = 1;", "tonic"));
    assert!(!contains_word("let now_ms = ctx.now_ms;", "::now("));
}

/// No source file holds more than 800 lines of code before its tests, unless its first lines
/// say why (a line starting `//! Long file:`); short files are read in one sitting.
#[test]
fn tidy_files_stay_short() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut long = Vec::new();
    for file in rust_files(&root.join("src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text
            .lines()
            .take_while(|l| !l.starts_with("mod tests {"))
            .count();
        let reason = text
            .lines()
            .take(40)
            .any(|l| l.starts_with("//! Long file:"));
        if code > 800 && !reason {
            let rel = file.strip_prefix(root).unwrap().display().to_string();
            long.push(format!("{rel}: {code} lines of code"));
        }
    }
    assert!(long.is_empty(), "{}", long.join("\n"));
}

/// The folders of `src/` form layers (DESIGN.md): no two top-level modules import each other,
/// directly or around a longer circle, so each side can be read and changed from the bottom up.
#[test]
fn tidy_no_import_circles_between_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut uses: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for file in rust_files(&root) {
        let rel = file.strip_prefix(&root).unwrap();
        let top = rel.iter().next().unwrap().to_string_lossy();
        let top = top.trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let deps = uses.entry(top.clone()).or_default();
        for (_, line) in code_lines(&file) {
            for (i, _) in line.match_indices("crate::") {
                let name: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    deps.insert(name);
                }
            }
        }
    }
    // Depth-first search for a path back to the start from each module.
    for start in uses.keys() {
        let mut stack = vec![vec![start.clone()]];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(path) = stack.pop() {
            let last = path.last().unwrap();
            for next in uses.get(last).into_iter().flatten() {
                assert!(
                    next != start,
                    "import circle: {} -> {start}",
                    path.join(" -> ")
                );
                if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push(longer);
                }
            }
        }
    }
}
