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

/// Everything `summarize` needs from one or more `cargo test` runs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TestOutput {
    pub(crate) results: Vec<TargetResult>,
    /// Cell names from `skipped: <cell> not configured` lines, in order of appearance.
    pub(crate) skipped: Vec<String>,
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
        }
        if let Some(cell) = parse_skip_note(trimmed) {
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
    let cell = rest.split_whitespace().next()?;
    Some(cell.trim_end_matches([':', ',', '.']).to_string())
}

/// One row of the summary table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CellRow {
    pub(crate) cell: String,
    pub(crate) status: &'static str,
    pub(crate) passed: u64,
    pub(crate) failed: u64,
    pub(crate) ignored: u64,
    pub(crate) skipped: u64,
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
/// provides the cell; a configured cell that reports skips is a failure, because `cargo xtask
/// test` promises that nothing it configured is silently skipped.
pub(crate) fn summarize(
    output: &TestOutput,
    cells: &[Cell],
    configured: &dyn Fn(&Cell) -> bool,
    commands_ok: bool,
) -> Summary {
    let mut rows: Vec<CellRow> = cells
        .iter()
        .map(|c| CellRow {
            cell: c.name.to_string(),
            status: "ok",
            passed: 0,
            failed: 0,
            ignored: 0,
            skipped: 0,
        })
        .collect();
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
    for name in &output.skipped {
        match rows.iter_mut().find(|row| &row.cell == name) {
            Some(row) => row.skipped += 1,
            None => rows.push(CellRow {
                cell: name.clone(),
                status: "skipped",
                passed: 0,
                failed: 0,
                ignored: 0,
                skipped: 1,
            }),
        }
    }
    for (row, cell) in rows.iter_mut().zip(cells) {
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
    let header = ["cell", "status", "passed", "failed", "ignored", "skipped"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.cell.clone(),
                r.status.to_string(),
                r.passed.to_string(),
                r.failed.to_string(),
                r.ignored.to_string(),
                r.skipped.to_string(),
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
        assert_eq!(s.problems.len(), 1);
    }

    #[test]
    fn configured_cell_that_skips_fails() {
        let out = TestOutput {
            results: vec![],
            skipped: vec!["softhsm".into()],
        };
        let unconfigured = summarize(&out, CELLS, &|_| false, true);
        assert!(unconfigured.problems.is_empty());
        assert_eq!(unconfigured.rows[1].status, "skipped");

        let configured = summarize(&out, CELLS, &|c| c.name == "softhsm", true);
        assert_eq!(configured.rows[1].status, "FAILED");
        assert_eq!(configured.problems.len(), 1);
    }

    #[test]
    fn unknown_skipped_cell_gets_its_own_row() {
        let out = TestOutput {
            results: vec![],
            skipped: vec!["tpm2".into(), "tpm2".into()],
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
            "cell    | status | passed | failed | ignored | skipped"
        );
        assert_eq!(
            lines[2],
            "unit    | ok     |      7 |      0 |       1 |       0"
        );
        assert_eq!(
            lines[3],
            "softhsm | FAILED |      4 |      1 |       0 |       1"
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
