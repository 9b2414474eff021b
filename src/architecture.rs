//! The layering of ARCHITECTURE.md, checked: every `crate::` path in
//! `src/` (outside comments) names a module the importing module's layer
//! may use, and no chain of imports between top-level modules runs in a
//! circle; and every module with children has one layout (CODE_STYLE.md).
//! `cargo test --lib architecture` runs it; a failure names the file and
//! the import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module's layer (ARCHITECTURE.md, "Layers").
const LAYERS: &[(&str, u8)] = &[
    ("domain", 0),
    ("hash", 0),
    ("health", 0),
    ("internal_events", 0),
    ("process", 0),
    ("segfile", 0),
    ("tls", 0),
    ("wire", 0),
    ("log", 1),
    ("store", 1),
    ("actors", 2),
    // The front and the pipeline are siblings: neither imports the other
    // (ingest reaches the actors only through the command log).
    ("http", 2),
    ("app", 4),
    ("config", 4),
    ("check", 5),
    ("fuzzing", 5),
    ("loadgen", 5),
    ("probe", 5),
    ("verify", 5),
    ("cli", 6),
];

/// Imports across modules of the same layer that the table allows
/// (ARCHITECTURE.md says why); any other same-layer import is refused.
const SAME_LAYER: &[(&str, &str)] = &[
    ("internal_events", "domain"),
    ("wire", "domain"),
    ("domain", "hash"),
    ("health", "internal_events"),
    ("config", "app"),
    ("check", "loadgen"),
    ("check", "verify"),
    ("verify", "app"),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None`: the crate
/// root, the binary, this check).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "architecture")).then(|| name.to_string())
}

/// The top-level modules named by `crate::` paths in `code`, comments
/// left out; `crate::{a::x, b}` names `a` and `b`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 0;
                let mut start = true;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            rest = &group[j..];
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => start = true,
                        c if start && (c.is_alphanumeric() || c == '_') => {
                            let ident: String = group[j..]
                                .chars()
                                .take_while(|c| c.is_alphanumeric() || *c == '_')
                                .collect();
                            found.insert(ident);
                            start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                let ident: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !ident.is_empty() {
                    found.insert(ident);
                }
            }
        }
    }
    found
}

/// Every import between different top-level modules: (from, to, file).
fn edges() -> Vec<(String, String, PathBuf)> {
    let src: PathBuf = [env!("CARGO_MANIFEST_DIR"), "src"].iter().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let Some(from) = module_of(&src, &f) else {
            continue;
        };
        let code = std::fs::read_to_string(&f).unwrap_or_default();
        for to in imports(&code) {
            // Crate-level items (`crate::LONG_VERSION`) are not modules.
            if to != from && to.chars().next().is_some_and(|c| c.is_lowercase()) {
                out.push((from.clone(), to, f.clone()));
            }
        }
    }
    out
}

#[test]
fn no_import_runs_up_the_layers() {
    let mut wrong = Vec::new();
    for (from, to, file) in edges() {
        let (Some(lf), Some(lt)) = (layer(&from), layer(&to)) else {
            wrong.push(format!(
                "{}: {from} -> {to}: a module missing from LAYERS",
                file.display()
            ));
            continue;
        };
        let allowed = lt < lf || (lt == lf && SAME_LAYER.contains(&(from.as_str(), to.as_str())));
        if !allowed {
            wrong.push(format!(
                "{}: {from} (layer {lf}) imports {to} (layer {lt})",
                file.display()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against ARCHITECTURE.md:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_circle_spans_top_level_modules() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to, _) in edges() {
        graph.entry(from).or_default().insert(to);
    }
    // Depth-first search for a back edge, reporting the circle found.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut circle = path[i..].to_vec();
            circle.push(m.to_string());
            return Some(circle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(circle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("a circle of imports: {}", circle.join(" -> "));
        }
    }
}

#[test]
fn the_checker_reads_paths_groups_and_skips_comments() {
    let code = "use crate::{domain::X, log::{A, B}, wire};\n\
                let x = crate::store::f(); // crate::actors::Y\n\
                /// [`crate::http::Z`]\n";
    let got: Vec<_> = imports(code).into_iter().collect();
    assert_eq!(got, ["domain", "log", "store", "wire"]);
}

#[test]
fn one_module_layout_a_module_with_children_is_its_mod_rs() {
    let src: PathBuf = [env!("CARGO_MANIFEST_DIR"), "src"].iter().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let beside: Vec<_> = files
        .iter()
        .filter(|f| f.with_extension("").is_dir())
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        beside.is_empty(),
        "name.rs beside a name/ directory (CODE_STYLE.md: name/mod.rs): {beside:?}"
    );
}
