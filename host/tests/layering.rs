//! The host's layers are enforced, not hoped for (docs/architecture.md draws them):
//!
//! - crate level: `funnel-artifacts` cannot see `funnel` (cargo forbids the cycle), xtask
//!   depends on `funnel-artifacts` only, and `funnel` without default features builds without
//!   candle, plotters or clap (checked here with `cargo tree`);
//! - module level inside `funnel`: each top-level module uses only the modules listed for it
//!   below (checked here from the sources), so the dependency graph has no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Top-level modules of `funnel` and the ones each may use. A stage never uses another stage
/// except `eval` (which measures the codec) and `plot` (which draws the codec's and eval's
/// results).
const ALLOWED: &[(&str, &[&str])] = &[
    ("runtime", &[]),
    ("export", &[]),
    ("quantize", &[]),
    ("codec", &["runtime"]),
    ("eval", &["codec", "runtime"]),
    ("plot", &["codec", "eval"]),
    ("train", &["runtime"]),
    ("pipeline", &["codec", "eval", "export", "plot", "quantize", "runtime", "train"]),
    ("cli", &["pipeline", "runtime"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Rust files of a top-level module: `src/<m>.rs` or everything under `src/<m>/`.
fn files_of(module: &str) -> Vec<PathBuf> {
    let file = src().join(format!("{module}.rs"));
    if file.is_file() {
        return vec![file];
    }
    let mut out = Vec::new();
    let mut stack = vec![src().join(module)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// The module names a piece of code reaches through `crate::`, outside its unit tests (which
/// stand at the end of each file, behind `#[cfg(test)]`).
fn crate_references(code: &str) -> BTreeSet<String> {
    let code = code.split("\n#[cfg(test)]").next().unwrap_or("");
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let preceded_by_ident = code[..i].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_');
        if preceded_by_ident {
            continue; // e.g. `funnel_crate::`
        }
        let rest = &code[i + "crate::".len()..];
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> =
        ALLOWED.iter().map(|(m, deps)| (*m, deps.iter().copied().collect())).collect();
    // Every top-level module is in the table (a new one must be placed in a layer).
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    for line in lib.lines().filter_map(|l| l.trim().strip_prefix("pub mod ")) {
        let module = line.trim_end_matches(';');
        assert!(allowed.contains_key(module), "module `{module}` of lib.rs has no layer in tests/layering.rs");
    }
    let mut violations = Vec::new();
    for (module, deps) in &allowed {
        let files = files_of(module);
        assert!(!files.is_empty(), "no sources for module `{module}`");
        for file in files {
            let code = std::fs::read_to_string(&file).unwrap();
            for used in crate_references(&code) {
                if used != *module && !deps.contains(used.as_str()) {
                    violations.push(format!("{} uses crate::{used}", file.display()));
                }
            }
        }
    }
    assert!(violations.is_empty(), "layering violations:\n{}", violations.join("\n"));
}

#[test]
fn the_checker_sees_references() {
    let code = "use crate::codec::X;\nfn f() { crate::eval::g(); funnel_crate::x(); }\n#[cfg(test)]\nmod tests { use crate::cli; }";
    assert_eq!(crate_references(code), ["codec", "eval"].map(String::from).into_iter().collect());
}

/// `cargo tree` of a package (normal dependencies only) as one string.
fn cargo_tree(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args(["tree", "--offline", "--edges", "normal", "--prefix", "none"])
        .args(args)
        .output()
        .expect("run cargo tree");
    assert!(out.status.success(), "cargo tree {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn decoding_builds_without_the_training_framework() {
    let decode_only = cargo_tree(&["-p", "funnel", "--no-default-features"]);
    for heavy in ["candle-core ", "plotters ", "clap ", "tensogram-sz3 "] {
        assert!(!decode_only.contains(heavy), "funnel --no-default-features depends on {heavy}");
    }
    assert!(decode_only.contains("tract-onnx "), "the decoder's runtime is there");
    let xtask = cargo_tree(&["-p", "xtask"]);
    for heavy in ["candle-core ", "tract-onnx ", "plotters ", "funnel v"] {
        assert!(!xtask.contains(heavy), "xtask depends on {heavy}");
    }
    assert!(xtask.contains("funnel-artifacts "));
}
