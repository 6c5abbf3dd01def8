//! `cargo xtask services start|stop`: the emulators the cells talk to (SoftHSM2, moto, OpenBao,
//! swtpm) on 127.0.0.1, and the env file with their settings under `target/`.

use std::env;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::Result;
use crate::process::{run_quiet, show, workspace_root};
use crate::setup::{
    MOTO_VERSION, OPENBAO_VERSION, bao_command, moto_installed, openbao_installed, venv_dir,
    venv_python,
};

/// The region the aws cell's keys live in (moto accepts any).
const AWS_TEST_REGION: &str = "us-east-1";

/// Where the services keep their state and the env file, under `target/`.
pub(crate) fn services_dir() -> PathBuf {
    workspace_root().join("target").join("keychain-services")
}

/// The env file the cells' settings go to (`KEY=value` lines, shell-sourceable:
/// `set -a; . target/keychain-services/env; set +a`).
fn env_file() -> PathBuf {
    services_dir().join("env")
}

/// Starts every service cell and writes their settings to the env file. Idempotent: a second
/// start replaces the first one's state.
pub(crate) fn start() -> Result {
    let dir = services_dir();
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut vars = Vec::new();
    vars.extend(start_softhsm(&dir.join("softhsm"))?);
    vars.extend(start_moto(&dir.join("moto"))?);
    vars.extend(start_openbao(&dir.join("openbao"))?);
    vars.extend(start_swtpm(&dir.join("swtpm"))?);
    let path = env_file();
    fs::write(&path, render_env(&vars)).map_err(|e| format!("writing {}: {e}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    println!("services: settings written to {}", path.display());
    Ok(())
}

pub(crate) fn stop() -> Result {
    stop_moto(&services_dir().join("moto"))?;
    stop_openbao(&services_dir().join("openbao"))?;
    stop_swtpm(&services_dir().join("swtpm"))?;
    let softhsm = services_dir().join("softhsm");
    if softhsm.exists() {
        fs::remove_dir_all(&softhsm).map_err(|e| format!("removing {}: {e}", softhsm.display()))?;
        println!("services: softhsm token removed");
    }
    let env = env_file();
    if env.exists() {
        fs::remove_file(&env).map_err(|e| format!("removing {}: {e}", env.display()))?;
    }
    Ok(())
}

/// The aws cell's KMS: a LocalStack (or other KMS) endpoint given in
/// `KEYCHAIN_TEST_AWS_EXTERNAL_ENDPOINT` is used as it is; otherwise moto's server from the venv, through
/// xtask/moto_launcher.py, on 127.0.0.1 with an ephemeral port. A moto this function started
/// earlier is stopped first. Returns the cell's settings, with test credentials for the SDK's
/// default chain.
fn start_moto(dir: &Path) -> Result<Vec<(String, String)>> {
    stop_moto(dir)?;
    let credentials = |vars: &mut Vec<(String, String)>| {
        for (var, default) in [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ] {
            let value = env::var(var).unwrap_or_else(|_| default.to_owned());
            vars.push((var.to_owned(), value));
        }
    };
    // Not KEYCHAIN_TEST_AWS_ENDPOINT itself: a shell that sourced an earlier env file has
    // that set to a moto that is gone.
    if let Ok(endpoint) = env::var("KEYCHAIN_TEST_AWS_EXTERNAL_ENDPOINT") {
        let region =
            env::var("KEYCHAIN_TEST_AWS_REGION").unwrap_or_else(|_| AWS_TEST_REGION.to_owned());
        println!("services: aws cell on the given endpoint {endpoint} (not starting moto)");
        let mut vars = vec![
            ("KEYCHAIN_TEST_AWS_ENDPOINT".to_owned(), endpoint),
            ("KEYCHAIN_TEST_AWS_REGION".to_owned(), region),
        ];
        credentials(&mut vars);
        return Ok(vars);
    }
    if !moto_installed() {
        return Err(format!(
            "moto {MOTO_VERSION} is not installed in {}; run `cargo xtask setup`",
            venv_dir().display()
        ));
    }
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let port_file = dir.join("port");
    let log = dir.join("moto.log");
    let log_file =
        fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let launcher = workspace_root().join("xtask").join("moto_launcher.py");
    let mut cmd = Command::new(venv_python());
    cmd.arg(&launcher)
        .args(["--host", "127.0.0.1", "--port", "0", "--port-file"])
        .arg(&port_file)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err);
    let pid = spawn_service(&mut cmd, dir)?;
    let port = wait_for_port(&port_file, pid, &log)?;
    println!("services: moto {MOTO_VERSION} (KMS, corrected) on 127.0.0.1:{port}, pid {pid}");
    let mut vars = vec![
        (
            "KEYCHAIN_TEST_AWS_ENDPOINT".to_owned(),
            format!("http://127.0.0.1:{port}"),
        ),
        (
            "KEYCHAIN_TEST_AWS_REGION".to_owned(),
            AWS_TEST_REGION.to_owned(),
        ),
    ];
    credentials(&mut vars);
    Ok(vars)
}

/// Waits (30 s at most) until the launcher has written its port and the port accepts a
/// connection.
fn wait_for_port(port_file: &Path, pid: u32, log: &Path) -> Result<u16> {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let port = fs::read_to_string(port_file)
            .ok()
            .and_then(|t| t.trim().parse::<u16>().ok());
        if let Some(port) = port
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            return Ok(port);
        }
        if !Path::new(&format!("/proc/{pid}")).exists() || Instant::now() > deadline {
            let tail = fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "moto did not start (pid {pid}); its log {}:\n{tail}",
                log.display()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Stops the moto launcher recorded in `dir/pid` and removes `dir`.
fn stop_moto(dir: &Path) -> Result {
    stop_service(dir, "moto", |cmdline| cmdline.contains("moto_launcher.py"))
}

/// Stops the process recorded in `dir/pid` — only if its command line still is the service's
/// (`is_service`), so a reused pid is never killed — waits for it to go, and removes `dir`.
fn stop_service(dir: &Path, what: &str, is_service: fn(&str) -> bool) -> Result {
    let pid_file = dir.join("pid");
    if let Some(pid) = fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if is_service(&String::from_utf8_lossy(&cmdline)) {
            run_quiet(Command::new("kill").arg(pid.to_string()))?;
            let deadline = Instant::now() + std::time::Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                // A zombie keeps its /proc entry until reaped; its cmdline is empty then.
                if fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.is_empty()) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            println!("services: {what} (pid {pid}) stopped");
        }
    }
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// A port on 127.0.0.1 that is free, with the next one free too (OpenBao's dev server puts its
/// cluster listener there).
fn free_port_pair() -> Result<u16> {
    for _ in 0..50 {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| format!("cannot bind 127.0.0.1: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("local address: {e}"))?
            .port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err("found no two free adjacent ports on 127.0.0.1".into())
}

/// The vault cell's server: `bao server -dev` (in-memory storage, unsealed) on 127.0.0.1 with a
/// free port and a generated root token (passed in the environment, not on the command line),
/// with Transit enabled at `transit/`. An OpenBao this function started earlier is stopped first.
fn start_openbao(dir: &Path) -> Result<Vec<(String, String)>> {
    stop_openbao(dir)?;
    if !openbao_installed() {
        return Err(format!(
            "OpenBao {OPENBAO_VERSION} is not installed in {}; run `cargo xtask setup`",
            venv_dir().display()
        ));
    }
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let token = format!("kt-{}", random_pin(24)?);
    let port = free_port_pair()?;
    let address = format!("http://127.0.0.1:{port}");
    let log = dir.join("bao.log");
    let log_file =
        fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new(bao_command());
    cmd.args(["server", "-dev", "-dev-no-store-token"])
        .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
        .env("BAO_DEV_ROOT_TOKEN_ID", &token)
        .env_remove("BAO_ADDR")
        .env_remove("VAULT_ADDR")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err);
    let pid = spawn_service(&mut cmd, dir)?;
    // Ready when the CLI can enable Transit (the listener accepts before the core is unsealed).
    let mut enable = Command::new(bao_command());
    enable
        .args(["secrets", "enable", "transit"])
        .env("BAO_ADDR", &address)
        .env("BAO_TOKEN", &token);
    wait_ready("OpenBao", pid, &log, 60, &mut enable)?;
    println!(
        "services: OpenBao {OPENBAO_VERSION} (dev, Transit at transit/) on {address}, pid {pid}"
    );
    Ok(vec![
        ("KEYCHAIN_TEST_VAULT_ADDR".to_owned(), address),
        ("KEYCHAIN_TEST_VAULT_TOKEN".to_owned(), token),
        (
            "KEYCHAIN_TEST_VAULT_BAO".to_owned(),
            bao_command().display().to_string(),
        ),
    ])
}

/// Stops the OpenBao server recorded in `dir/pid` and removes `dir`.
fn stop_openbao(dir: &Path) -> Result {
    stop_service(dir, "OpenBao", |cmdline| {
        cmdline.contains("bao") && cmdline.contains("server")
    })
}

/// The tpm2 cell's TPM: `swtpm socket --tpm2` with its state under `dir`, its command and control
/// ports on 127.0.0.1 (a free adjacent pair), started up by swtpm itself. swtpm serves one
/// connection at a time. The dictionary-attack lockout is relaxed (1000 tries, 1 s recovery) so
/// the tests of wrong auth values do not lock the simulator for the others.
fn start_swtpm(dir: &Path) -> Result<Vec<(String, String)>> {
    stop_swtpm(dir)?;
    let state = dir.join("state");
    fs::create_dir_all(&state).map_err(|e| format!("creating {}: {e}", state.display()))?;
    let port = free_port_pair()?;
    let log = dir.join("swtpm.log");
    let mut cmd = Command::new("swtpm");
    cmd.args(["socket", "--tpm2"])
        .arg(format!("--server=type=tcp,port={port},bindaddr=127.0.0.1"))
        .arg(format!(
            "--ctrl=type=tcp,port={},bindaddr=127.0.0.1",
            port + 1
        ))
        .arg(format!("--tpmstate=dir={}", state.display()))
        .arg(format!("--log=file={},level=1", log.display()))
        .args(["--flags", "not-need-init,startup-clear"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let pid = spawn_service(&mut cmd, dir)?;
    let tcti = format!("swtpm:host=127.0.0.1,port={port}");
    // Ready when tpm2-tools can talk to it, which relaxes the lockout.
    let mut relax = Command::new("tpm2_dictionarylockout");
    relax
        .args([
            "--setup-parameters",
            "--max-tries=1000",
            "--recovery-time=1",
            "--lockout-recovery-time=1",
        ])
        .env("TPM2TOOLS_TCTI", &tcti);
    wait_ready("swtpm", pid, &log, 30, &mut relax)?;
    println!("services: swtpm (TPM 2.0) on 127.0.0.1:{port}, pid {pid}");
    Ok(vec![("KEYCHAIN_TEST_TPM2_TCTI".to_owned(), tcti)])
}

/// Spawns a service in a process group of its own (it outlives `cargo xtask services start`, and
/// a Ctrl-C in the shell that ran it does not stop it; `services stop` does) and records its pid
/// in `dir/pid` for `stop_service`.
fn spawn_service(cmd: &mut Command, dir: &Path) -> Result<u32> {
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run `{}`: {e}", show(cmd)))?;
    let pid = child.id();
    fs::write(dir.join("pid"), format!("{pid}\n"))
        .map_err(|e| format!("writing {}: {e}", dir.join("pid").display()))?;
    Ok(pid)
}

/// Runs `probe` until it succeeds; fails with its stderr and the service's `log` when the
/// service (`pid`) exits or `seconds` pass.
fn wait_ready(what: &str, pid: u32, log: &Path, seconds: u64, probe: &mut Command) -> Result {
    let deadline = Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let out = probe
            .output()
            .map_err(|e| format!("cannot run `{}`: {e}", show(probe)))?;
        if out.status.success() {
            return Ok(());
        }
        if !Path::new(&format!("/proc/{pid}")).exists() || Instant::now() > deadline {
            let tail = fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "{what} did not start (pid {pid}): {}; its log {}:\n{tail}",
                String::from_utf8_lossy(&out.stderr).trim(),
                log.display()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Stops the swtpm recorded in `dir/pid` and removes `dir` (its state with it).
fn stop_swtpm(dir: &Path) -> Result {
    stop_service(dir, "swtpm", |cmdline| cmdline.contains("swtpm"))
}

/// Where Debian and others install SoftHSM2's module.
const SOFTHSM_MODULES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
];

/// The label of the token the pkcs11 cell runs on.
const SOFTHSM_TOKEN: &str = "keychain-test";

/// A fresh SoftHSM2 token in `dir`: its own config file (tokens under `dir/tokens`), a token
/// initialized with generated SO and user PINs. Returns the cell's settings.
fn start_softhsm(dir: &Path) -> Result<Vec<(String, String)>> {
    let Some(module) = SOFTHSM_MODULES.iter().map(Path::new).find(|p| p.is_file()) else {
        return Err(format!(
            "no SoftHSM2 module found (looked at {}); run `cargo xtask setup`",
            SOFTHSM_MODULES.join(", ")
        ));
    };
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    }
    let tokens = dir.join("tokens");
    fs::create_dir_all(&tokens).map_err(|e| format!("creating {}: {e}", tokens.display()))?;
    let conf = dir.join("softhsm2.conf");
    fs::write(&conf, softhsm_conf(&tokens))
        .map_err(|e| format!("writing {}: {e}", conf.display()))?;
    let so_pin = random_pin(16)?;
    let pin = random_pin(12)?;
    run_quiet(
        Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", SOFTHSM_TOKEN])
            .args(["--so-pin", &so_pin, "--pin", &pin])
            .env("SOFTHSM2_CONF", &conf)
            .stdout(Stdio::null()),
    )
    .map_err(|e| e.replace(&so_pin, "[so-pin]").replace(&pin, "[pin]"))?;
    println!(
        "services: softhsm token {SOFTHSM_TOKEN:?} in {} (module {})",
        tokens.display(),
        module.display()
    );
    Ok(vec![
        ("SOFTHSM2_CONF".into(), conf.display().to_string()),
        (
            "KEYCHAIN_TEST_PKCS11_MODULE".into(),
            module.display().to_string(),
        ),
        ("KEYCHAIN_TEST_PKCS11_TOKEN".into(), SOFTHSM_TOKEN.into()),
        ("KEYCHAIN_TEST_PKCS11_PIN".into(), pin),
        ("KEYCHAIN_TEST_PKCS11_SO_PIN".into(), so_pin),
    ])
}

fn softhsm_conf(tokens: &Path) -> String {
    format!(
        "# written by cargo xtask services start\n\
         directories.tokendir = {}\n\
         objectstore.backend = file\n\
         log.level = ERROR\n\
         slots.removable = false\n",
        tokens.display()
    )
}

/// `len` random decimal digits from the OS: test PINs, fresh per `services start`.
fn random_pin(len: usize) -> Result<String> {
    use std::io::Read as _;
    let mut bytes = vec![0u8; len];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| char::from(b'0' + b % 10)).collect())
}

/// `KEY=value` lines; values with characters a shell would interpret are single-quoted.
fn render_env(vars: &[(String, String)]) -> String {
    let mut out = String::from("# written by cargo xtask services start; test values only\n");
    for (k, v) in vars {
        let plain = v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:+,=@".contains(&b));
        if plain {
            out.push_str(&format!("{k}={v}\n"));
        } else {
            out.push_str(&format!("{k}='{}'\n", v.replace('\'', "'\\''")));
        }
    }
    out
}

/// Reads what `render_env` wrote (comments and blank lines skipped, one level of quotes removed).
fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = match v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                Some(quoted) => quoted.replace("'\\''", "'"),
                None => v.to_string(),
            };
            (k.trim().to_string(), v)
        })
        .collect()
}

/// The env file's settings, empty when services were not started.
pub(crate) fn load_env_file() -> Vec<(String, String)> {
    fs::read_to_string(env_file())
        .map(|t| parse_env(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cells::{CELLS, cell_configured_with};

    #[test]
    fn env_file_round_trips() {
        let vars = vec![
            ("A".to_string(), "/plain/path.so".to_string()),
            ("B".to_string(), "with space and 'quote'".to_string()),
            ("C".to_string(), String::new()),
        ];
        let text = render_env(&vars);
        assert!(text.contains("A=/plain/path.so\n"), "{text}");
        assert_eq!(parse_env(&text), vars);
    }

    #[test]
    fn pkcs11_cell_owns_its_targets_and_reads_the_env_file() {
        let pkcs11 = CELLS.iter().find(|c| c.name == "pkcs11");
        assert!(pkcs11.is_some_and(|c| c.targets.contains(&"tests/pkcs11_")));
        let Some(cell) = pkcs11 else { return };
        let vars: Vec<(String, String)> = cell
            .env
            .iter()
            .map(|v| ((*v).to_string(), "x".to_string()))
            .collect();
        assert!(cell_configured_with(cell, &vars));
        assert!(
            softhsm_conf(Path::new("/t/tokens")).contains("directories.tokendir = /t/tokens\n")
        );
        let pin = random_pin(12);
        assert!(pin.is_ok_and(|p| p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit())));
    }

    #[test]
    fn aws_cell_owns_its_targets_and_its_launcher_corrects_moto() {
        let aws = CELLS.iter().find(|c| c.name == "aws");
        assert!(
            aws.is_some_and(|c| c.targets.contains(&"tests/aws_")
                && c.env.contains(&"KEYCHAIN_TEST_AWS_ENDPOINT"))
        );
        let launcher = fs::read_to_string(workspace_root().join("xtask").join("moto_launcher.py"));
        assert!(launcher.is_ok_and(|l| l.contains("MessageType") && l.contains("Prehashed")));
        assert!(MOTO_VERSION.starts_with("5."));
        assert!(venv_dir().starts_with(workspace_root().join("target")));
    }

    #[test]
    fn stopping_moto_that_never_ran_is_fine() -> Result {
        let dir = env::temp_dir().join(format!("xtask-moto-{}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        // A pid that is not a launcher (this test process) is left alone.
        fs::write(dir.join("pid"), format!("{}\n", std::process::id()))
            .map_err(|e| e.to_string())?;
        stop_moto(&dir)?;
        assert!(!dir.exists());
        Ok(())
    }
}
