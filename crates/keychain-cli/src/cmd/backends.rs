//! `keychain backends` and `keychain doctor`.

use std::path::Path;
use std::time::{Duration, Instant};

use keychain::{Capabilities, Config, Error, ErrorKind, HealthStatus, Registry, Result};
use serde_json::{Value, json};

use crate::output::{Out, Table, error_json, protection_name};

/// How long `doctor` waits for one backend to open, and then for its health check.
const DOCTOR_TIMEOUT: Duration = Duration::from_secs(30);

/// The optional operations a backend declares, by name.
fn operations(caps: &Capabilities) -> Vec<&'static str> {
    let mut ops = vec!["sign"];
    for (on, name) in [
        (caps.sign_message, "sign-message"),
        (!caps.oaep_hashes.is_empty(), "rsa-oaep"),
        (caps.aead, "aead"),
        (caps.rotate, "rotate"),
        (caps.import, "import"),
        (caps.export_wrapped, "export-wrapped"),
        (caps.import_wrapped, "import-wrapped"),
        (caps.random, "random"),
        (caps.health, "health"),
    ] {
        if on {
            ops.push(name);
        }
    }
    ops
}

/// `backends`.
pub(super) async fn list(out: Out, config: Option<&Path>) -> Result<()> {
    let (keychain, origin) = crate::config::open(config).await?;
    let registry = keychain.registry();
    let default = registry.default_name().map(str::to_owned);
    let mut docs = Vec::new();
    let mut table = Table::new(&[
        "NAME",
        "TYPE",
        "DEFAULT",
        "PROTECTION",
        "ALGORITHMS",
        "OPERATIONS",
    ]);
    for (name, entry) in registry.entries() {
        let caps = entry.backend().capabilities();
        let is_default = default.as_deref() == Some(name);
        let algorithms: Vec<&str> = caps.algorithms.iter().map(|a| a.as_str()).collect();
        table.row(vec![
            name.to_owned(),
            entry.backend_type().to_owned(),
            if is_default { "yes" } else { "" }.to_owned(),
            protection_name(caps.protection),
            algorithms.join(","),
            operations(caps).join(","),
        ]);
        docs.push(json!({
            "name": name,
            "type": entry.backend_type(),
            "uri_scheme": entry.uri_scheme(),
            "default": is_default,
            "operations": operations(caps),
            "signature_schemes": caps.signature_schemes.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "capabilities": serde_json::to_value(caps).unwrap_or(Value::Null),
        }));
    }
    let closed = keychain.close().await;
    let doc = json!({ "config": origin.to_string(), "default": default, "backends": docs });
    out.report(&doc, || {
        format!("configuration: {origin}\n\n{}", table.render())
    })?;
    closed
}

/// One backend's health as `doctor` reports it.
struct Check {
    name: String,
    backend_type: String,
    status: &'static str,
    healthy: bool,
    details: Vec<(String, String)>,
    error: Option<Error>,
    elapsed: Duration,
}

/// `doctor`: opens each backend on its own (so one broken backend does not hide the others)
/// and asks it for its health.
pub(super) async fn doctor(out: Out, config: Option<&Path>) -> Result<()> {
    let (mut config, origin) = crate::config::load(config)?;
    let mut problems = Vec::new();
    if let Some(default) = &config.default
        && !config.backends.contains_key(default)
    {
        problems.push(format!("default backend `{default}` is not configured"));
    }
    for (name, backend) in &config.backends {
        if let Some(target) = &backend.fallback
            && !config.backends.contains_key(target)
        {
            problems.push(format!(
                "backend `{name}` falls back to `{target}`, which is not configured"
            ));
        }
    }
    if config.backends.is_empty() {
        problems.push("no backend is configured".to_owned());
    }
    let mut checks = Vec::new();
    for (name, mut backend) in std::mem::take(&mut config.backends) {
        let backend_type = backend.backend_type.clone();
        // Checked alone: a fallback would hide whether this backend itself works.
        backend.fallback = None;
        let single = Config::default().with_backend(name.clone(), backend);
        checks.push(check(name, backend_type, &single).await);
    }
    let unhealthy = checks.iter().filter(|c| !c.healthy).count();

    let doc = json!({
        "config": origin.to_string(),
        "healthy": unhealthy == 0 && problems.is_empty(),
        "problems": problems,
        "backends": checks.iter().map(|c| json!({
            "name": c.name,
            "type": c.backend_type,
            "status": c.status,
            "healthy": c.healthy,
            "details": c.details.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect::<serde_json::Map<_, _>>(),
            "error": c.error.as_ref().map(|e| error_json(e, crate::exit::code(e.kind()))),
            "ms": c.elapsed.as_millis(),
        })).collect::<Vec<_>>(),
    });
    out.report(&doc, || {
        let mut table = Table::new(&["BACKEND", "TYPE", "STATUS", "TIME", "DETAILS"]);
        for c in &checks {
            let details = match &c.error {
                Some(e) => e.to_string(),
                None => c
                    .details
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            table.row(vec![
                c.name.clone(),
                c.backend_type.clone(),
                c.status.to_owned(),
                format!("{} ms", c.elapsed.as_millis()),
                details,
            ]);
        }
        let mut text = format!("configuration: {origin}\n");
        for p in &problems {
            text.push_str(&format!("problem: {p}\n"));
        }
        if !table.is_empty() {
            text.push('\n');
            text.push_str(&table.render());
        }
        text
    })?;
    if unhealthy > 0 || !problems.is_empty() {
        return Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "{unhealthy} of {} backend(s) unhealthy{}",
                checks.len(),
                if problems.is_empty() {
                    String::new()
                } else {
                    format!("; {}", problems.join("; "))
                }
            ),
        )
        .with_retryable(false));
    }
    Ok(())
}

async fn check(name: String, backend_type: String, config: &Config) -> Check {
    let started = Instant::now();
    let mut result = Check {
        name,
        backend_type,
        status: "error",
        healthy: false,
        details: Vec::new(),
        error: None,
        elapsed: Duration::ZERO,
    };
    let opened = match tokio::time::timeout(DOCTOR_TIMEOUT, Registry::open(config)).await {
        Ok(Ok(registry)) => Ok(registry),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("did not open within {} s", DOCTOR_TIMEOUT.as_secs()),
        )),
    };
    let registry = match opened {
        Ok(r) => r,
        Err(e) => {
            result.status = "unreachable";
            result.error = Some(e);
            result.elapsed = started.elapsed();
            return result;
        }
    };
    let Some(backend) = registry.get(&result.name) else {
        result.error = Some(Error::new(
            ErrorKind::Unexpected,
            "opened but not registered",
        ));
        return result;
    };
    match tokio::time::timeout(DOCTOR_TIMEOUT, backend.health()).await {
        Ok(Ok(health)) => {
            (result.status, result.healthy) = match health.status {
                HealthStatus::Ok => ("ok", true),
                HealthStatus::Degraded => ("degraded", true),
                _ => ("unavailable", false),
            };
            result.details = health.details;
        }
        Ok(Err(e)) if e.kind() == ErrorKind::Unsupported => {
            result.status = "ok";
            result.healthy = true;
            result.details = vec![("health".into(), "opened; no health report".into())];
        }
        Ok(Err(e)) => {
            result.status = "unavailable";
            result.error = Some(e);
        }
        Err(_) => {
            result.status = "unavailable";
            result.error = Some(Error::new(
                ErrorKind::Timeout,
                format!("no health report within {} s", DOCTOR_TIMEOUT.as_secs()),
            ));
        }
    }
    // The check is over; a close error is not what doctor reports on.
    let _ = registry.close().await;
    result.elapsed = started.elapsed();
    result
}
