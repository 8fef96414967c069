//! The integration tests, as one binary (ripgrep's layout): each file of `tests/` is a module
//! here, so the helpers in `util` are compiled once and every one of them is used. `Cargo.toml`
//! sets `autotests = false`; a new test file must be added below, and
//! [`every_test_file_is_a_module_of_this_binary`] fails until it is.
//!
//! Proptest keeps each module's regressions beside its source file
//! (`tests/<module>.proptest-regressions`), as before.

mod util;

mod archive;
mod cli;
mod guild;
mod odd_messages;
mod reliability;
mod reliability_kill;
mod upgrade;
mod user_view;

/// With `autotests = false` Cargo no longer builds a file of `tests/` on its own: one that is
/// not declared above would silently never run.
#[test]
fn every_test_file_is_a_module_of_this_binary() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let this = std::fs::read_to_string(dir.join("tests.rs")).unwrap();
    let declared: Vec<&str> = this
        .lines()
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
        .collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let is_module =
            path.extension().is_some_and(|e| e == "rs") || path.join("mod.rs").is_file();
        if !is_module || name == "tests" {
            continue;
        }
        assert!(
            declared.contains(&name),
            "{} is not a module of tests/tests.rs: add `mod {name};` there, or it never runs",
            path.display()
        );
    }
}
