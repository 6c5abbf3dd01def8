//! Reading `cargo test` output: per-target results, skip notes, and the summary table.

use crate::cells::Cell;

/// One test binary's (or one crate's doc-tests') `test result:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetResult {
    /// What cargo said it was running: `unittests src/lib.rs`, `tests/x.rs`, `Doc-tests keychain_core`.
    pub(crate) target: String,
    pub(crate) ok: bool,
    pub(crate) passed: u64,
    pub(crate) failed: u64,
    pub(crate) ignored: u64,
}

/// How a conformance check ended, as the testkit's line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckEnd {
    Passed,
    Failed,
    Skipped,
}

/// One `keychain-testkit: <end> <check> on <backend>[: <reason>]` line (the testkit's `MARKER`),
/// with the test target it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckLine {
    pub(crate) target: String,
    pub(crate) end: CheckEnd,
    pub(crate) check: String,
    pub(crate) backend: String,
    /// Why it was skipped; empty otherwise.
    pub(crate) reason: String,
}

/// What the testkit writes at the start of each of its lines (`keychain_testkit::MARKER`; xtask
/// is std-only, so the text is repeated here and a test compares the two).
pub(crate) const CHECK_MARKER: &str = "keychain-testkit: ";

/// Everything `summarize` needs from one or more `cargo test` runs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TestOutput {
    pub(crate) results: Vec<TargetResult>,
    /// Cell names from `skipped: <cell> not configured` lines, in order of appearance.
    pub(crate) skipped: Vec<String>,
    /// The conformance checks that ran or were skipped, in order of appearance.
    pub(crate) checks: Vec<CheckLine>,
}

/// Parses cargo's merged stdout+stderr. The merge keeps `Running`/`Doc-tests` headers in order
/// with the result lines they belong to, which is what lets results be attributed to cells.
pub(crate) fn parse_test_output(text: &str) -> TestOutput {
    let mut out = TestOutput::default();
    let mut current = String::from("?");
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("Running ") {
            // `Running tests/x.rs (target/debug/deps/x-0123abcd)`: keep the source part.
            current = rest.split(" (").next().unwrap_or(rest).trim().to_string();
        } else if trimmed.starts_with("Doc-tests ") {
            current = trimmed.to_string();
        } else if let Some(rest) = trimmed.strip_prefix("test result: ")
            && let Some(result) = parse_result_line(&current, rest)
        {
            out.results.push(result);
        } else if let Some(check) = parse_check_line(&current, trimmed) {
            out.checks.push(check);
        } else if let Some(cell) = parse_skip_note(trimmed) {
            out.skipped.push(cell);
        }
    }
    out
}

/// `ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s`
fn parse_result_line(target: &str, rest: &str) -> Option<TargetResult> {
    let (status, counts) = rest.split_once(". ")?;
    let ok = match status {
        "ok" => true,
        "FAILED" => false,
        _ => return None,
    };
    let mut result = TargetResult {
        target: target.to_string(),
        ok,
        passed: 0,
        failed: 0,
        ignored: 0,
    };
    for part in counts.split(';') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match what {
            "passed" => result.passed = n,
            "failed" => result.failed = n,
            "ignored" => result.ignored = n,
            _ => {}
        }
    }
    Some(result)
}

/// The convention for cells: a test whose service is absent writes
/// `skipped: <cell> not configured` straight to `std::io::stderr()` (not `eprintln!`, which the
/// test harness captures), so the note reaches xtask without `--nocapture`.
fn parse_skip_note(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("skipped: ")?;
    let (cell, rest) = rest.split_once(' ')?;
    rest.starts_with("not configured")
        .then(|| cell.trim_end_matches([':', ',', '.']).to_string())
}

/// The testkit's line for one check, written like the cells' notes straight to stderr:
/// `keychain-testkit: passed|failed|skipped <check> on <backend>[: <reason>]`. `note` lines (parts
/// of a passed check left untested) are not counted.
fn parse_check_line(target: &str, line: &str) -> Option<CheckLine> {
    let (_, rest) = line.split_once(CHECK_MARKER)?;
    let (end, rest) = rest.split_once(' ')?;
    let end = match end {
        "passed" => CheckEnd::Passed,
        "failed" => CheckEnd::Failed,
        "skipped" => CheckEnd::Skipped,
        _ => return None,
    };
    let (check, rest) = rest.split_once(" on ")?;
    let (backend, reason) = rest.split_once(": ").unwrap_or((rest, ""));
    Some(CheckLine {
        target: target.to_string(),
        end,
        check: check.to_string(),
        backend: backend.to_string(),
        reason: reason.to_string(),
    })
}

/// One row of the summary table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CellRow {
    pub(crate) cell: String,
    pub(crate) status: &'static str,
    pub(crate) passed: u64,
    pub(crate) failed: u64,
    pub(crate) ignored: u64,
    /// Tests that said `skipped: <cell> not configured`.
    pub(crate) skipped: u64,
    /// Conformance checks that ran (passed or failed).
    pub(crate) checks_ran: u64,
    /// Conformance checks that had nothing to test: the backend does not declare what they need
    /// (or the cell is not configured).
    pub(crate) checks_skipped: u64,
}

impl CellRow {
    fn new(cell: &str, status: &'static str) -> Self {
        Self {
            cell: cell.to_string(),
            status,
            passed: 0,
            failed: 0,
            ignored: 0,
            skipped: 0,
            checks_ran: 0,
            checks_skipped: 0,
        }
    }
}

/// The table plus the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) rows: Vec<CellRow>,
    /// Why the run counts as failed; empty means success.
    pub(crate) problems: Vec<String>,
}

/// The cell a test target belongs to: the first cell that lists a name contained in the
/// target, else the first cell (`unit`), which owns everything unattributed.
fn cell_of<'c>(target: &str, cells: &'c [Cell]) -> &'c str {
    cells
        .iter()
        .find(|c| c.targets.iter().any(|t| target.contains(t)))
        .or(cells.first())
        .map_or("unit", |c| c.name)
}

/// Folds parsed output into one row per cell. `configured(cell)` says whether the environment
/// provides the cell; a configured cell that reports skips, or that ran no test at all, is a
/// failure, because `cargo xtask test` promises that nothing it configured is silently skipped.
pub(crate) fn summarize(
    output: &TestOutput,
    cells: &[Cell],
    configured: &dyn Fn(&Cell) -> bool,
    commands_ok: bool,
) -> Summary {
    let mut rows: Vec<CellRow> = cells.iter().map(|c| CellRow::new(c.name, "ok")).collect();
    let mut problems = Vec::new();

    for r in &output.results {
        let name = cell_of(&r.target, cells);
        if let Some(row) = rows.iter_mut().find(|row| row.cell == name) {
            row.passed += r.passed;
            row.failed += r.failed;
            row.ignored += r.ignored;
            if !r.ok || r.failed > 0 {
                row.status = "FAILED";
            }
        }
        if !r.ok || r.failed > 0 {
            problems.push(format!("{}: {} failed", r.target, r.failed));
        }
    }
    for check in &output.checks {
        let name = cell_of(&check.target, cells);
        if let Some(row) = rows.iter_mut().find(|row| row.cell == name) {
            match check.end {
                CheckEnd::Passed | CheckEnd::Failed => row.checks_ran += 1,
                CheckEnd::Skipped => row.checks_skipped += 1,
            }
        }
    }
    for name in &output.skipped {
        match rows.iter_mut().find(|row| &row.cell == name) {
            Some(row) => row.skipped += 1,
            None => {
                let mut row = CellRow::new(name, "skipped");
                row.skipped = 1;
                rows.push(row);
            }
        }
    }
    for (row, cell) in rows.iter_mut().zip(cells) {
        // After a failed build the cells ran nothing; the failed command below says why.
        if commands_ok && configured(cell) && row.passed + row.failed == 0 {
            row.status = "FAILED";
            problems.push(format!("cell {} is configured but ran no tests", cell.name));
        }
        if row.skipped == 0 {
            continue;
        }
        if configured(cell) {
            row.status = "FAILED";
            problems.push(format!(
                "cell {} is configured but {} test(s) reported it skipped",
                cell.name, row.skipped
            ));
        } else if row.status == "ok" {
            row.status = "skipped";
        }
    }
    if !commands_ok && problems.is_empty() {
        // A build failure prints no result line to blame; don't let the table say "ok".
        problems.push("cargo test exited with an error (see output above)".to_string());
        for row in rows.iter_mut().filter(|r| r.status == "ok") {
            row.status = "FAILED";
        }
    }
    Summary { rows, problems }
}

/// Renders the rows as an aligned plain-text table.
pub(crate) fn render_table(rows: &[CellRow]) -> String {
    let header = [
        "cell",
        "status",
        "passed",
        "failed",
        "ignored",
        "not configured",
        "checks ran",
        "checks skipped",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.cell.clone(),
                r.status.to_string(),
                r.passed.to_string(),
                r.failed.to_string(),
                r.ignored.to_string(),
                r.skipped.to_string(),
                r.checks_ran.to_string(),
                r.checks_skipped.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, fields: &[&str]| {
        let parts: Vec<String> = fields
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (f, w))| {
                if i < 2 {
                    format!("{f:<w$}")
                } else {
                    format!("{f:>w$}")
                }
            })
            .collect();
        out.push_str(parts.join(" | ").trim_end());
        out.push('\n');
    };
    line(&mut out, &header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&rule.join("-|-"));
    out.push('\n');
    for row in &cells {
        let fields: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&mut out, &fields);
    }
    out
}

/// The skipped conformance checks of the configured cells: one line per cell, backend and
/// reason, naming the checks skipped for it and how many tests skipped each (a backend may run
/// the suite more than once: over two stores, two providers), in the order they first appeared.
/// Empty when nothing was skipped.
pub(crate) fn render_skipped_checks(
    output: &TestOutput,
    cells: &[Cell],
    configured: &dyn Fn(&Cell) -> bool,
) -> String {
    struct Group<'a> {
        cell: &'a str,
        backend: &'a str,
        reason: &'a str,
        checks: Vec<(&'a str, usize)>,
    }
    let mut groups: Vec<Group<'_>> = Vec::new();
    for line in output.checks.iter().filter(|c| c.end == CheckEnd::Skipped) {
        let cell = cell_of(&line.target, cells);
        let group = match groups
            .iter()
            .position(|g| g.cell == cell && g.backend == line.backend && g.reason == line.reason)
        {
            Some(i) => &mut groups[i],
            None => {
                groups.push(Group {
                    cell,
                    backend: &line.backend,
                    reason: &line.reason,
                    checks: Vec::new(),
                });
                let last = groups.len() - 1;
                &mut groups[last]
            }
        };
        match group.checks.iter_mut().find(|(c, _)| *c == line.check) {
            Some((_, n)) => *n += 1,
            None => group.checks.push((&line.check, 1)),
        }
    }
    let mut out = String::new();
    // A cell that is not configured says so once; its checks need no line.
    for cell in cells.iter().filter(|c| configured(c)).map(|c| c.name) {
        for g in groups.iter().filter(|g| g.cell == cell) {
            let checks: Vec<String> = g
                .checks
                .iter()
                .map(|(check, n)| match n {
                    1 => (*check).to_string(),
                    n => format!("{check} ({n}x)"),
                })
                .collect();
            out.push_str(&format!(
                "  {cell}: {} on {}: {}\n",
                checks.join(", "),
                g.backend,
                g.reason
            ));
        }
    }
    out
}

/// The Markdown tables (and their `###` headings) in a bench target's stdout.
pub(crate) fn bench_tables(stdout: &str) -> String {
    let mut out = String::new();
    for line in stdout.lines() {
        if line.starts_with("###") || line.starts_with('|') {
            out.push_str(line);
            out.push('\n');
        } else if line.is_empty() && !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
    }
    out
}

/// One line describing the machine, from the texts of /proc/cpuinfo, /proc/meminfo and
/// /etc/os-release.
pub(crate) fn machine_line(
    cpuinfo: &str,
    meminfo: &str,
    os_release: &str,
    cores: usize,
    rustc: &str,
) -> String {
    let field = |text: &str, key: &str| -> Option<String> {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once([':', '='])?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
        })
    };
    let cpu = field(cpuinfo, "model name").unwrap_or_else(|| "unknown CPU".to_owned());
    let mem = field(meminfo, "MemTotal")
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or_else(
            || "unknown memory".to_owned(),
            |kib| format!("{:.0} GiB RAM", kib as f64 / 1048576.0),
        );
    let os = field(os_release, "PRETTY_NAME").unwrap_or_else(|| "unknown OS".to_owned());
    format!("{cpu}, {cores} cores, {mem}; {os}; {rustc}")
}

/// The whole `BENCHMARKS.md`.
pub(crate) fn benchmarks_md(date: &str, machine: &str, sections: &[String]) -> String {
    let mut doc = String::from(
        "# Benchmarks\n\nWritten by `cargo xtask bench`; do not edit by hand. Each backend is measured side \
         by side with the raw library underneath it, in one run, on the same keys. \
         `ratio = keychain / baseline` (higher is better; 1.0 = no overhead).\n\n",
    );
    doc.push_str(&format!(
        "- date: {date}\n- machine: {machine}\n- build: cargo's bench profile with fat LTO and one codegen unit, \
         keychain and baseline in the same binary\n\n"
    ));
    for s in sections {
        doc.push_str(s.trim_end());
        doc.push_str("\n\n");
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
   Compiling keychain-core v0.1.0 (/work/main/crates/keychain-core)
    Finished `test` profile [unoptimized + debuginfo] target(s) in 1.00s
     Running unittests src/lib.rs (target/debug/deps/keychain_core-0123)

running 3 tests
test a ... ok
test b ... ok
test c ... ignored

test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s

     Running tests/softhsm.rs (target/debug/deps/softhsm-4567)
skipped: softhsm not configured
keychain-testkit: passed sign-verify on pkcs11
keychain-testkit: skipped rsa-oaep on pkcs11: Capabilities::oaep_hashes is empty
keychain-testkit: note sign-verify on pkcs11: did not test something
keychain-testkit: skipped attest on pkcs11: Capabilities::attest is false
keychain-testkit: failed rotate on pkcs11

running 1 test
test d ... FAILED

test result: FAILED. 4 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.10s

   Doc-tests keychain_core

running 5 tests
test result: ok. 5 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.20s
";

    const CELLS: &[Cell] = &[
        Cell {
            name: "unit",
            env: &[],
            needs: &[],
            targets: &[],
        },
        Cell {
            name: "softhsm",
            env: &["KEYCHAIN_TEST_PKCS11_MODULE"],
            needs: &[],
            targets: &["softhsm"],
        },
    ];

    #[test]
    fn parses_results_per_target() {
        let out = parse_test_output(SAMPLE);
        let targets: Vec<&str> = out.results.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(
            targets,
            [
                "unittests src/lib.rs",
                "tests/softhsm.rs",
                "Doc-tests keychain_core"
            ]
        );
        assert_eq!(
            out.results[0],
            TargetResult {
                target: "unittests src/lib.rs".into(),
                ok: true,
                passed: 2,
                failed: 0,
                ignored: 1
            }
        );
        assert!(!out.results[1].ok);
        assert_eq!(out.results[1].failed, 1);
        assert_eq!(out.results[2].passed, 5);
        assert_eq!(out.skipped, ["softhsm"]);
        let ends: Vec<(CheckEnd, &str)> = out
            .checks
            .iter()
            .map(|c| (c.end, c.check.as_str()))
            .collect();
        assert_eq!(
            ends,
            [
                (CheckEnd::Passed, "sign-verify"),
                (CheckEnd::Skipped, "rsa-oaep"),
                (CheckEnd::Skipped, "attest"),
                (CheckEnd::Failed, "rotate"),
            ]
        );
        assert_eq!(
            out.checks[1],
            CheckLine {
                target: "tests/softhsm.rs".into(),
                end: CheckEnd::Skipped,
                check: "rsa-oaep".into(),
                backend: "pkcs11".into(),
                reason: "Capabilities::oaep_hashes is empty".into(),
            }
        );
    }

    #[test]
    fn a_check_line_is_not_a_cell_skip_and_only_not_configured_is() {
        let out = parse_test_output(
            "keychain-testkit: skipped aead on x: skipped: tpm2 not configured
             skipped: openssl not installed
             skipped: vault not configured
",
        );
        assert_eq!(out.checks.len(), 1);
        assert_eq!(out.skipped, ["vault"]);
    }

    #[test]
    fn the_marker_is_the_testkits() {
        let testkit = std::fs::read_to_string(
            crate::process::workspace_root().join("crates/keychain-testkit/src/lib.rs"),
        )
        .unwrap_or_default();
        assert!(
            testkit.contains(&format!("pub const MARKER: &str = {CHECK_MARKER:?};")),
            "keychain_testkit::MARKER differs from {CHECK_MARKER:?}"
        );
    }

    #[test]
    fn ignores_lines_that_only_look_like_results() {
        let out = parse_test_output("test result: maybe. 1 passed\nnothing skipped here\n");
        assert!(out.results.is_empty());
        assert!(out.skipped.is_empty());
    }

    #[test]
    fn summary_attributes_results_and_skips_to_cells() {
        let out = parse_test_output(SAMPLE);
        let s = summarize(&out, CELLS, &|_| false, false);
        assert_eq!(s.rows[0].cell, "unit");
        assert_eq!((s.rows[0].passed, s.rows[0].ignored), (7, 1));
        assert_eq!(s.rows[0].status, "ok");
        assert_eq!(s.rows[1].status, "FAILED");
        assert_eq!((s.rows[1].passed, s.rows[1].failed), (4, 1));
        assert_eq!(s.rows[1].skipped, 1);
        assert_eq!((s.rows[1].checks_ran, s.rows[1].checks_skipped), (2, 2));
        assert_eq!((s.rows[0].checks_ran, s.rows[0].checks_skipped), (0, 0));
        assert_eq!(s.problems.len(), 1);
    }

    fn result(target: &str, passed: u64) -> TargetResult {
        TargetResult {
            target: target.into(),
            ok: true,
            passed,
            failed: 0,
            ignored: 0,
        }
    }

    #[test]
    fn configured_cell_that_skips_fails() {
        let out = TestOutput {
            results: vec![
                result("unittests src/lib.rs", 1),
                result("tests/softhsm.rs", 1),
            ],
            skipped: vec!["softhsm".into()],
            checks: vec![],
        };
        let unconfigured = summarize(&out, CELLS, &|_| false, true);
        assert!(unconfigured.problems.is_empty());
        assert_eq!(unconfigured.rows[1].status, "skipped");

        let configured = summarize(&out, CELLS, &|c| c.name == "softhsm", true);
        assert_eq!(configured.rows[1].status, "FAILED");
        assert_eq!(configured.problems.len(), 1);
    }

    #[test]
    fn configured_cell_that_ran_no_test_fails() {
        let out = TestOutput {
            results: vec![
                result("unittests src/lib.rs", 3),
                TargetResult {
                    ignored: 2,
                    ..result("tests/softhsm.rs", 0)
                },
            ],
            ..TestOutput::default()
        };
        let unconfigured = summarize(&out, CELLS, &|c| c.name == "unit", true);
        assert!(
            unconfigured.problems.is_empty(),
            "{:?}",
            unconfigured.problems
        );

        let configured = summarize(&out, CELLS, &|_| true, true);
        assert_eq!(configured.rows[1].status, "FAILED");
        assert_eq!(
            configured.problems,
            ["cell softhsm is configured but ran no tests"]
        );
    }

    #[test]
    fn skipped_checks_are_listed_once_per_backend_and_reason() {
        let mut out = parse_test_output(SAMPLE);
        out.checks.extend(parse_test_output(SAMPLE).checks);
        out.checks.extend(
            parse_test_output(
                "     Running tests/softhsm.rs (x)\n\
                 keychain-testkit: skipped aead on hsm (not configured): the cell is not configured\n\
                 keychain-testkit: skipped random on hsm (not configured): the cell is not configured\n",
            )
            .checks,
        );
        let listed = render_skipped_checks(&out, CELLS, &|_| true);
        assert_eq!(
            listed,
            "  softhsm: rsa-oaep (2x) on pkcs11: Capabilities::oaep_hashes is empty\n\
             \x20 softhsm: attest (2x) on pkcs11: Capabilities::attest is false\n\
             \x20 softhsm: aead, random on hsm (not configured): the cell is not configured\n"
        );
        assert_eq!(
            render_skipped_checks(&out, CELLS, &|c| c.name == "unit"),
            ""
        );
    }

    #[test]
    fn unknown_skipped_cell_gets_its_own_row() {
        let out = TestOutput {
            results: vec![
                result("unittests src/lib.rs", 1),
                result("tests/softhsm.rs", 1),
            ],
            skipped: vec!["tpm2".into(), "tpm2".into()],
            checks: vec![],
        };
        let s = summarize(&out, CELLS, &|_| true, true);
        let row = s.rows.iter().find(|r| r.cell == "tpm2");
        assert_eq!(row.map(|r| (r.status, r.skipped)), Some(("skipped", 2)));
        assert!(s.problems.is_empty());
    }

    #[test]
    fn failed_command_without_results_is_a_failure() {
        let s = summarize(&TestOutput::default(), CELLS, &|_| true, false);
        assert_eq!(s.problems.len(), 1);
        assert!(s.rows.iter().all(|r| r.status == "FAILED"));
    }

    #[test]
    fn table_is_aligned() {
        let out = parse_test_output(SAMPLE);
        let s = summarize(&out, CELLS, &|_| false, true);
        let table = render_table(&s.rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "cell    | status | passed | failed | ignored | not configured | checks ran | checks skipped"
        );
        assert_eq!(
            lines[2],
            "unit    | ok     |      7 |      0 |       1 |              0 |          0 |              0"
        );
        assert_eq!(
            lines[3],
            "softhsm | FAILED |      4 |      1 |       0 |              1 |          2 |              2"
        );
    }

    #[test]
    fn bench_tables_keep_headings_and_rows_only() {
        let out = "noise\n### pkcs8\n\n| a | b |\n|---|---|\n| x | 1 |\nmore noise\n";
        assert_eq!(
            bench_tables(out),
            "### pkcs8\n\n| a | b |\n|---|---|\n| x | 1 |\n"
        );
    }

    #[test]
    fn machine_line_reads_proc_texts() {
        let line = machine_line(
            "processor\t: 0\nmodel name\t: Test CPU @ 2GHz\n",
            "MemTotal:       25165824 kB\n",
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
            2,
            "rustc 1.95.0",
        );
        assert_eq!(
            line,
            "Test CPU @ 2GHz, 2 cores, 24 GiB RAM; Debian GNU/Linux 12 (bookworm); rustc 1.95.0"
        );
    }
}
