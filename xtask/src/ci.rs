//! `cargo xtask ci`: fmt, setup, clippy, cargo-deny, the dependency invariants, then the tests.

use std::time::Instant;

use crate::process::{cargo, run, stdout_of};
use crate::setup::{advisory_db_path, has_commit, setup};
use crate::{Result, deps, services, test};

pub(crate) fn ci() -> Result {
    type Step = (&'static str, fn() -> Result);
    let steps: [Step; 6] = [
        ("fmt", || {
            run(&mut cargo(&["fmt", "--all", "--", "--check"]))
        }),
        // Before clippy: building keychain-tpm2 needs libtss2-dev, which setup installs.
        ("setup", setup),
        ("clippy", || {
            run(&mut cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ]))
        }),
        ("deny", deny),
        ("dependency invariants", check_deps),
        ("test", || {
            services::start()?;
            let result = test::test();
            result.and(services::stop())
        }),
    ];
    let total = Instant::now();
    for (name, step) in steps {
        println!("\n==> {name}");
        let start = Instant::now();
        let result = step();
        let verdict = if result.is_ok() { "ok" } else { "FAILED" };
        println!("<== {name}: {verdict} in {:.1?}", start.elapsed());
        result.map_err(|e| format!("ci step `{name}` failed: {e}"))?;
    }
    println!("\nci: all steps passed in {:.1?}", total.elapsed());
    Ok(())
}

fn deny() -> Result {
    let db = advisory_db_path()?;
    if !has_commit(&db) {
        return Err(format!(
            "no advisory db at {}; run `cargo xtask setup` (with ../shared/advisory-db or \
             KEYCHAIN_ADVISORY_DB)",
            db.display()
        ));
    }
    // cargo-deny reads `cargo metadata` for every platform, offline: fetch the crates of
    // other platforms (Windows, wasm) first, or a fresh machine fails on a missing download.
    run(&mut cargo(&["fetch"]))?;
    // `--offline` before `check`: otherwise cargo-deny fetches and resets the database.
    run(&mut cargo(&["deny", "--offline", "check"]))
}

fn check_deps() -> Result {
    let metadata = stdout_of(&mut cargo(&[
        "metadata",
        "--no-deps",
        "--format-version",
        "1",
    ]))?;
    let members = deps::workspace_members(&metadata);
    if members.is_empty() {
        return Err("found no workspace members in `cargo metadata` output".into());
    }
    let mut problems = Vec::new();
    for rule in deps::rules(&members) {
        let tree = stdout_of(&mut cargo(&rule.tree_args()))?;
        let found = deps::violations(&rule, &tree);
        let features = match rule.features {
            deps::Features::All => "all features",
            deps::Features::Default => "default features",
        };
        let verdict = if found.is_empty() { "ok" } else { "VIOLATED" };
        println!("deps: {} ({features}): {verdict}", rule.package);
        problems.extend(found);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real workspace, as `cargo xtask ci` checks it: invariants hold for the crates present.
    #[test]
    fn workspace_respects_dependency_invariants() -> Result {
        check_deps()
    }
}
