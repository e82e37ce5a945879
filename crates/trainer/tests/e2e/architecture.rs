//! The seams Cargo cannot check, from the source: the three crates'
//! dependencies stay in their layers (as Cargo.lock records them), the
//! event contract imports nothing from its crate, within the trainer only
//! `trainer/` names tch, the `trainui` program links no libtorch, and no two
//! files of a crate import each other, directly or around a circle.
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The source folder of one of the workspace's crates.
fn src(krate: &str) -> PathBuf {
    crate::common::repo().join("crates").join(krate).join("src")
}

/// Every source file of a crate, with its text up to its test module.
fn sources(krate: &str) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                let text = std::fs::read_to_string(&path).unwrap();
                out.insert(path.strip_prefix(root).unwrap().to_owned(), code_of(&text));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&src(krate), &src(krate), &mut out);
    out
}

/// A file's text up to its code for tests (`#[cfg(test)]`, or the
/// examples other crates' tests may use too).
fn code_of(text: &str) -> String {
    let end = ["#[cfg(test)]", "#[cfg(any(test"]
        .iter()
        .filter_map(|marker| text.find(marker))
        .min()
        .unwrap_or(text.len());
    text[..end].to_owned()
}

/// The module path of a file: `tui/app.rs` is `["tui", "app"]`.
fn module_of(file: &Path) -> Vec<String> {
    let mut parts: Vec<String> = file
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.len() == 1 && parts[0] == "main" {
        parts.pop();
    }
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The file of a module, if it is one.
fn file_of(module: &[String], files: &BTreeMap<PathBuf, String>) -> Option<PathBuf> {
    if module.is_empty() {
        return ["lib.rs", "main.rs"]
            .into_iter()
            .map(PathBuf::from)
            .find(|root| files.contains_key(root));
    }
    let base: PathBuf = module.iter().collect();
    [base.with_extension("rs"), base.join("mod.rs")]
        .into_iter()
        .find(|candidate| files.contains_key(candidate))
}

/// The paths a file names through `crate::`, `super::` and its own child
/// modules (`app::` in tui/mod.rs), in `use` declarations (with their braces
/// expanded) and in code. `is_module` says whether a path is a module.
fn referenced_paths(
    code: &str,
    module: &[String],
    is_module: &dyn Fn(&[String]) -> bool,
) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut text = code.to_owned();
    // Expand `use a::{b, c::{d, e}};` into `a::b, a::c::d, a::c::e`,
    // innermost braces first.
    while let Some(open) = text.rfind("::{") {
        let Some(close) = text[open..].find('}').map(|c| open + c) else {
            break;
        };
        let start = text[..open]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |i| i + 1);
        let prefix = text[start..open].to_owned();
        let expanded: Vec<String> = text[open + 3..close]
            .split(',')
            // rustfmt ends a list over several lines with a comma.
            .filter(|item| !item.trim().is_empty())
            .map(|item| format!("{prefix}::{}", item.trim()))
            .collect();
        text.replace_range(start..=close, &expanded.join(", "));
    }
    let tokens = text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'));
    // A path has `::` (`pub(super)` names no module).
    for token in tokens.filter(|t| t.contains("::")) {
        let mut parts = token.split("::").filter(|p| !p.is_empty());
        let Some(first) = parts.next() else { continue };
        let rest: Vec<String> = parts.map(str::to_owned).collect();
        let absolute = match first {
            // Other crates' paths are Cargo's to check.
            "crate" => rest,
            "super" => {
                let mut parent = module[..module.len().saturating_sub(1)].to_vec();
                let mut rest = rest.into_iter().peekable();
                while rest.peek().is_some_and(|p| p == "super") {
                    rest.next();
                    parent.pop();
                }
                parent.extend(rest);
                parent
            }
            child if !rest.is_empty() => {
                let mut path = module.to_vec();
                path.push(child.to_owned());
                if !is_module(&path) {
                    continue;
                }
                path.extend(rest);
                path
            }
            _ => continue,
        };
        paths.push(absolute);
    }
    paths
}

/// File to the files of the same crate it imports from.
fn imports(krate: &str) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let files = sources(krate);
    let mut graph = BTreeMap::new();
    for (file, code) in &files {
        let module = module_of(file);
        let is_module = |path: &[String]| file_of(path, &files).is_some();
        let mut targets = BTreeSet::new();
        for path in referenced_paths(code, &module, &is_module) {
            // The deepest module the path names.
            let target = (1..=path.len())
                .rev()
                .find_map(|n| file_of(&path[..n], &files));
            let root = |t: &PathBuf| t == Path::new("lib.rs") || t == Path::new("main.rs");
            if let Some(target) = target.filter(|t| t != file && !root(t)) {
                targets.insert(target);
            }
        }
        graph.insert(file.clone(), targets);
    }
    graph
}

/// The packages `package` depends on, directly or not, as Cargo.lock
/// records them.
fn dependencies_of(package: &str) -> BTreeSet<String> {
    let lock = std::fs::read_to_string(crate::common::repo().join("Cargo.lock")).unwrap();
    let mut direct: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in lock.split("[[package]]").skip(1) {
        let name = entry
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .unwrap()
            .trim_end_matches('"')
            .to_owned();
        let deps: Vec<String> = entry
            .split("dependencies = [")
            .nth(1)
            .map(|list| {
                list[..list.find(']').unwrap()]
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix('"'))
                    // `"name version"` where two versions are locked.
                    .map(|d| d.split([' ', '"']).next().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        direct.entry(name).or_default().extend(deps);
    }
    let mut seen = BTreeSet::new();
    let mut todo = vec![package.to_owned()];
    while let Some(next) = todo.pop() {
        for dep in direct.get(&next).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
    }
    seen
}

#[test]
fn each_crate_depends_only_on_the_layers_below_it() {
    let trainer = dependencies_of("trainui-torch");
    assert!(
        trainer.contains("tch") && trainer.contains("trainui") && trainer.contains("ratatui"),
        "the scan reads Cargo.lock: {trainer:?}"
    );
    let monitor = dependencies_of("trainui");
    for heavy in ["tch", "torch-sys", "tokenizers", "trainui-torch"] {
        assert!(!monitor.contains(heavy), "the monitor depends on {heavy}");
    }
    assert!(monitor.contains("trainui-protocol"));
    let protocol = dependencies_of("trainui-protocol");
    for heavy in [
        "tch",
        "torch-sys",
        "tokenizers",
        "ratatui",
        "trainui",
        "trainui-torch",
    ] {
        assert!(!protocol.contains(heavy), "the protocol depends on {heavy}");
    }
}

#[test]
fn the_event_contract_imports_nothing_from_its_crate() {
    let events = std::fs::read_to_string(src("protocol").join("events.rs")).unwrap();
    assert!(
        !code_of(&events).contains("crate::"),
        "events.rs must stand alone"
    );
    let imports = &imports("protocol")[Path::new("events.rs")];
    assert!(imports.is_empty(), "events.rs imports {imports:?}");
}

#[test]
fn within_the_trainer_only_its_model_code_knows_tch() {
    let sources = sources("trainer");
    assert!(sources.contains_key(Path::new("trainer/model.rs")));
    for (file, code) in sources {
        if file.starts_with("trainer") {
            continue;
        }
        let names_tch = code.match_indices("tch::").any(|(at, _)| {
            !code[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        });
        assert!(
            !names_tch,
            "crates/trainer/src/{} names tch, which only its trainer/ may",
            file.display()
        );
    }
}

/// `trainui` starts without loading libtorch (which takes most of a
/// second).
#[test]
fn the_trainui_program_links_no_libtorch() {
    let output = std::process::Command::new("readelf")
        .arg("--dynamic")
        .arg(crate::common::program("trainui"))
        .output()
        .expect("readelf (binutils) reads the binary");
    assert!(output.status.success());
    let dynamic = String::from_utf8_lossy(&output.stdout);
    assert!(dynamic.contains("(NEEDED)"), "{dynamic}");
    for library in ["libtorch", "libc10"] {
        assert!(
            !dynamic.contains(library),
            "trainui needs {library}: {dynamic}"
        );
    }
}

/// `trainui` hands training to `trainui-torch` beside it, and says what is
/// wrong when that program is not there.
#[test]
fn trainui_hands_training_to_trainui_torch_and_names_it_when_missing() {
    let trainui = crate::common::program("trainui");
    // Beside its sibling: the sibling answers (its own usage error here).
    let output = std::process::Command::new(&trainui)
        .args(["train", "--config", "/nonexistent/config.json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/config.json"), "{stderr}");
    // Alone: a clear failure naming the missing program.
    let dir = tempfile::tempdir().unwrap();
    let alone = dir.path().join("trainui");
    std::fs::copy(&trainui, &alone).unwrap();
    let output = std::process::Command::new(&alone)
        .args(["train", "--config", "/nonexistent/config.json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`trainui train` needs trainui-torch") && stderr.contains("./dev run"),
        "{stderr}"
    );
    // What needs no libtorch works alone.
    let output = std::process::Command::new(&alone)
        .args(["runs", "--json"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "[]");
}

/// Depth-first search for a path from `node` that comes back to a file on it.
fn cycle_from(
    node: &PathBuf,
    graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
    path: &mut Vec<PathBuf>,
    done: &mut BTreeSet<PathBuf>,
) -> Option<Vec<PathBuf>> {
    if let Some(at) = path.iter().position(|p| p == node) {
        let mut cycle = path[at..].to_vec();
        cycle.push(node.clone());
        return Some(cycle);
    }
    if !done.insert(node.clone()) {
        return None;
    }
    path.push(node.clone());
    for next in graph.get(node).into_iter().flatten() {
        if let Some(cycle) = cycle_from(next, graph, path, done) {
            return Some(cycle);
        }
    }
    path.pop();
    None
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let monitor = imports("monitor");
    assert!(
        monitor[Path::new("tui/app.rs")].contains(Path::new("tui/keys.rs")),
        "the scan sees imports: {monitor:?}"
    );
    for krate in ["protocol", "monitor", "trainer"] {
        assert_no_circle(krate, &imports(krate));
    }
}

fn assert_no_circle(krate: &str, graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) {
    let mut done = BTreeSet::new();
    for file in graph.keys() {
        let cycle = cycle_from(file, graph, &mut Vec::new(), &mut done);
        assert!(
            cycle.is_none(),
            "an import circle in crates/{krate}: {}",
            cycle
                .unwrap_or_default()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" -> ")
        );
    }
}

#[test]
fn the_scan_sees_every_kind_of_import_and_finds_a_circle() {
    let module = module_of(Path::new("tui/mod.rs"));
    let is_module = |path: &[String]| path == ["tui", "app"];
    let paths = referenced_paths(
        "use super::{events, lines::{a, b},\n};\nuse app::App;\nlet x = crate::rundir::read(1);\nlet y = std::fs::read(1);",
        &module,
        &is_module,
    );
    let names: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        names,
        [
            "events",
            "lines::a",
            "lines::b",
            "tui::app::App",
            "rundir::read"
        ]
    );

    let graph: BTreeMap<PathBuf, BTreeSet<PathBuf>> = [
        ("a.rs", &["b.rs"][..]),
        ("b.rs", &["c.rs"]),
        ("c.rs", &["a.rs"]),
        ("d.rs", &[]),
    ]
    .into_iter()
    .map(|(file, to)| (file.into(), to.iter().map(PathBuf::from).collect()))
    .collect();
    let cycle = cycle_from(
        &PathBuf::from("a.rs"),
        &graph,
        &mut Vec::new(),
        &mut BTreeSet::new(),
    );
    assert_eq!(
        cycle.unwrap(),
        ["a.rs", "b.rs", "c.rs", "a.rs"].map(PathBuf::from)
    );
    assert!(
        cycle_from(
            &PathBuf::from("d.rs"),
            &graph,
            &mut Vec::new(),
            &mut BTreeSet::new()
        )
        .is_none()
    );
}
