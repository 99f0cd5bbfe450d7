//! The runtime's modules import one way: each uses only modules on layers below its own, as
//! `ARCHITECTURE.md` lists them. Reads every `crate::` path in `src/` (including those reached
//! through the crate root's re-exports) and fails on an import sideways or up, which is what a
//! module cycle needs, and on a module that the table does not place.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers of `ARCHITECTURE.md`'s `layers` block, bottom first: one line a layer.
fn layers_of(architecture: &str) -> Vec<Vec<String>> {
    let block = architecture
        .split_once("```layers\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("ARCHITECTURE.md has a ```layers block");
    block
        .lines()
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .filter(|layer: &Vec<String>| !layer.is_empty())
        .collect()
}

/// The top-level module a source file belongs to: `stream/ws.rs` is `stream`, `lib.rs` is `lib`.
fn module_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .expect("a file under src")
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The code of a file without its comment lines (doc links name modules without using them).
fn code_of(source: &str) -> String {
    source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first identifier of `text`.
fn leading_ident(text: &str) -> &str {
    let text = text.trim_start();
    let end = text.find(|c| !is_ident_char(c)).unwrap_or(text.len());
    &text[..end]
}

/// The names that follow each `crate::` in `code`: `crate::a::b` gives `a`, `crate::{a, b::c}`
/// gives `a` and `b`. `$crate::` (a macro's own crate) is not a use.
fn crate_paths(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| is_ident_char(c) || c == '$') {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item_start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        names.push(leading_ident(&group[item_start..i]).to_owned());
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.push(leading_ident(&group[item_start..i]).to_owned());
                        item_start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            names.push(leading_ident(rest).to_owned());
        }
    }
    names.retain(|name| !name.is_empty() && name != "self");
    names
}

/// The crate root's `pub use module::…;` items, name -> module, so that `crate::Gateway` counts
/// as a use of `gateway`. Only the root's own statements (unindented) are read, not `__codegen`'s.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for statement in code_of(lib).split(';') {
        let statement = statement.trim_start_matches('\n');
        let Some(path) = statement.strip_prefix("pub use ") else {
            continue;
        };
        let module = leading_ident(path).to_owned();
        for name in path[module.len()..].split(|c: char| !is_ident_char(c)) {
            if !name.is_empty() && name != "self" && name != "as" {
                map.insert(name.to_owned(), module.clone());
            }
        }
    }
    map
}

/// Every `module -> module it uses` edge, from `(path relative to src, source)` pairs.
fn edges(files: &[(PathBuf, String)]) -> BTreeSet<(String, String)> {
    let modules: BTreeSet<String> = files.iter().map(|(path, _)| module_of(path)).collect();
    let reexports = files
        .iter()
        .find(|(path, _)| path == Path::new("lib.rs"))
        .map(|(_, source)| root_reexports(source))
        .unwrap_or_default();
    let mut edges = BTreeSet::new();
    for (path, source) in files {
        let from = module_of(path);
        for name in crate_paths(&code_of(source)) {
            let to = if modules.contains(&name) {
                Some(name)
            } else {
                reexports.get(&name).cloned()
            };
            if let Some(to) = to
                && to != from
            {
                edges.insert((from.clone(), to));
            }
        }
    }
    edges
}

/// What breaks the layering: a module on no layer, a layer naming no module, an import of a
/// module on the same layer or above.
fn violations(files: &[(PathBuf, String)], layers: &[Vec<String>]) -> Vec<String> {
    let level: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(index, layer)| layer.iter().map(move |module| (module.as_str(), index)))
        .collect();
    let modules: BTreeSet<String> = files
        .iter()
        .map(|(path, _)| module_of(path))
        .filter(|module| module != "lib")
        .collect();
    let mut problems = Vec::new();
    for module in &modules {
        if !level.contains_key(module.as_str()) {
            problems.push(format!(
                "module `{module}` is on no layer of ARCHITECTURE.md"
            ));
        }
    }
    for listed in level.keys() {
        if !modules.contains(*listed) {
            problems.push(format!(
                "ARCHITECTURE.md lists `{listed}`, which is no module"
            ));
        }
    }
    for (from, to) in edges(files) {
        if from == "lib" {
            continue;
        }
        if let (Some(&from_level), Some(&to_level)) =
            (level.get(from.as_str()), level.get(to.as_str()))
            && to_level >= from_level
        {
            let direction = if to_level == from_level {
                "its own layer"
            } else {
                "a layer above"
            };
            problems.push(format!("`{from}` uses `{to}`, on {direction}"));
        }
    }
    problems
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let source = std::fs::read_to_string(&path).expect("a source file");
            let relative = path.strip_prefix(root).expect("under src").to_owned();
            out.push((relative, source));
        }
    }
}

#[test]
fn every_import_points_down_the_layers_of_architecture_md() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture =
        std::fs::read_to_string(manifest.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let src = manifest.join("src");
    let mut files = Vec::new();
    sources(&src, &src, &mut files);
    let problems = violations(&files, &layers_of(&architecture));
    assert!(
        problems.is_empty(),
        "the runtime's layering is broken:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_check_sees_upward_sideways_and_reexported_uses() {
    let files = vec![
        (
            PathBuf::from("lib.rs"),
            "mod low;\nmod high;\npub use high::Top;\n".to_owned(),
        ),
        (
            PathBuf::from("low/mod.rs"),
            "// crate::high in a comment is no use\nuse crate::{side::X, Top};\n".to_owned(),
        ),
        (
            PathBuf::from("side.rs"),
            "fn f() { $crate::high::g() }".to_owned(),
        ),
        (PathBuf::from("high.rs"), "use crate::low::Y;\n".to_owned()),
    ];
    let layers = vec![
        vec!["low".to_owned(), "side".to_owned()],
        vec!["high".to_owned()],
    ];
    assert_eq!(
        violations(&files, &layers),
        vec![
            "`low` uses `high`, on a layer above".to_owned(),
            "`low` uses `side`, on its own layer".to_owned(),
        ]
    );
    let unplaced = vec![vec!["low".to_owned()], vec!["ghost".to_owned()]];
    assert_eq!(
        violations(&files, &unplaced)[..3],
        [
            "module `high` is on no layer of ARCHITECTURE.md".to_owned(),
            "module `side` is on no layer of ARCHITECTURE.md".to_owned(),
            "ARCHITECTURE.md lists `ghost`, which is no module".to_owned(),
        ]
    );
}
