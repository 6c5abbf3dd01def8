//! `cargo xtask bench`: every backend benchmark, collected into `BENCHMARKS.md`.

use std::fs;
use std::process::Command;

use crate::Result;
use crate::cells::Need;
use crate::process::{cargo, stdout_of, workspace_root};
use crate::report;
use crate::services::{self, load_env_file};
use crate::setup::{install_needs, setup};

/// What only `bench` needs beyond the cells: a C compiler and libcrypto's headers for the
/// OpenSSL baseline of the share-file KDF.
const BENCH_NEEDS: &[Need] = &[
    Need {
        command: "cc",
        package: "gcc",
    },
    Need {
        command: "pkg-config:libcrypto",
        package: "libssl-dev",
    },
];

/// Benchmark targets: (package, bench). Each prints Markdown tables (`operation | keychain |
/// baseline | ratio`) on stdout; `bench` collects them into `BENCHMARKS.md`.
/// Benches of service backends read the settings `services start` writes.
const BENCHES: &[(&str, &str)] = &[
    ("keychain-pkcs8", "backend"),
    ("keychain-pkcs11", "backend"),
    ("keychain-aws", "backend"),
    ("keychain-vault", "backend"),
    ("keychain-tpm2", "backend"),
    ("keychain-sc-hsm", "kdf"),
];

pub(crate) fn bench() -> Result {
    setup()?;
    install_needs(BENCH_NEEDS)?;
    services::start()?;
    let vars = load_env_file();
    let result = bench_all(&vars);
    result.and(services::stop())
}

fn bench_all(vars: &[(String, String)]) -> Result {
    let mut sections = Vec::new();
    for (package, bench) in BENCHES {
        println!("$ cargo bench -p {package} --bench {bench}");
        let mut cmd = cargo(&[
            "bench",
            "--quiet",
            "-p",
            package,
            "--all-features",
            "--bench",
            bench,
        ]);
        cmd.envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let out = stdout_of(&mut cmd)?;
        print!("{out}");
        sections.push(report::bench_tables(&out));
    }
    let doc = report::benchmarks_md(&today()?, &machine_description(), &sections);
    let path = workspace_root().join("BENCHMARKS.md");
    fs::write(&path, doc).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("bench: wrote {}", path.display());
    Ok(())
}

fn today() -> Result<String> {
    Ok(stdout_of(Command::new("date").args(["-u", "+%Y-%m-%d"]))?
        .trim()
        .to_owned())
}

/// CPU model, cores, memory, OS and compiler, from /proc and the tools themselves.
fn machine_description() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let rustc = stdout_of(Command::new("rustc").arg("--version")).unwrap_or_default();
    report::machine_line(&cpuinfo, &meminfo, &os_release, cores, rustc.trim())
}
