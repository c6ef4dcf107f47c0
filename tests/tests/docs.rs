//! The documentation that describes the code stays true to it: `docs/architecture.md` names
//! every source file of the three library crates, and nothing that no longer exists; the
//! README's route example is the one `plugin-api` compiles as a doctest.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
        .to_owned()
}

/// Every `.rs` file below `dir`, as a path relative to it with `/` separators.
fn sources(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).expect("readable source folder") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(dir).expect("below the folder");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

/// Whether `token` (as written in the doc, maybe shortened to its last components) names `file`.
fn names(token: &str, file: &str) -> bool {
    file == token || file.ends_with(&format!("/{token}"))
}

#[test]
fn architecture_lists_every_module_as_it_is() {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).expect("the doc");
    let modules = doc
        .split("\n## Modules")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/architecture.md has a `## Modules` section");
    let mut problems = Vec::new();
    for krate in ["plugin-api", "host", "server"] {
        let heading = format!("`{krate}/src/`");
        let section = modules
            .split(&heading)
            .nth(1)
            .map(|rest| rest.split("\n`").next().unwrap_or(rest))
            .unwrap_or_else(|| panic!("no {heading} part in the Modules section"));
        let tokens: Vec<&str> = section
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|t| t.ends_with(".rs"))
            .collect();
        let files = sources(&root().join(krate).join("src"));
        for file in &files {
            if !tokens.iter().any(|t| names(t, file)) {
                problems.push(format!("{krate}/src/{file} is not listed"));
            }
        }
        for token in &tokens {
            if !files.iter().any(|f| names(token, f)) {
                problems.push(format!(
                    "`{token}` is listed under {krate} but no such file exists"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/architecture.md, section Modules:\n{}",
        problems.join("\n")
    );
}

/// The first ```rust block after `heading` in `text`.
fn rust_block_after<'a>(text: &'a str, heading: &str) -> &'a str {
    let after = &text[text.find(heading).expect("heading present")..];
    let start = after.find("```rust\n").expect("a rust block") + "```rust\n".len();
    let len = after[start..].find("```").expect("block closed");
    &after[start..start + len]
}

#[test]
fn readme_route_example_is_the_compiled_doctest() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let block = rust_block_after(&readme, "## Serve HTTP routes");
    let http = std::fs::read_to_string(root().join("plugin-api/src/http.rs")).unwrap();
    let doc: String = http
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| {
            l.strip_prefix("//! ")
                .unwrap_or(l.trim_start_matches("//!"))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let start = doc.find("```\n").expect("the doctest") + "```\n".len();
    let len = doc[start..].find("```").expect("doctest closed");
    assert_eq!(
        block,
        &doc[start..start + len],
        "README and plugin-api/src/http.rs differ"
    );
}
