//! Dependency invariants of DESIGN.md §1, checked over `cargo tree` text.

/// Backend crates. None may depend on another, with one exception (`ALLOWED_BACKEND_EDGES`).
const BACKENDS: &[&str] = &[
    "keychain-pkcs8",
    "keychain-pkcs11",
    "keychain-sc-hsm",
    "keychain-tpm2",
    "keychain-aws",
    "keychain-gcp",
    "keychain-azure",
    "keychain-vault",
];

/// The SmartCard-HSM is a PKCS#11 device plus the DKEK protocol, so it builds on that backend.
const ALLOWED_BACKEND_EDGES: &[(&str, &str)] = &[("keychain-sc-hsm", "keychain-pkcs11")];

/// Provider SDKs and the native libraries behind the hardware backends.
const SDKS: &[&str] = &[
    "aws-*",
    "google-cloud-*",
    "azure_*",
    "vaultrs",
    "cryptoki",
    "cryptoki-sys",
    "tss-esapi",
    "tss-esapi-sys",
];

/// Async runtimes and HTTP clients.
const RUNTIMES_AND_HTTP: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "hyper",
    "reqwest",
    "ureq",
    "isahc",
    "surf",
];

/// `aws-lc-rs` is the software crypto library, not the AWS SDK; `aws-*` must not catch it.
const NOT_SDKS: &[&str] = &["aws-lc-*"];

/// Which feature set `cargo tree` resolves for a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Features {
    /// `--all-features`: the invariant holds whatever a user turns on.
    All,
    /// Default features: what a plain `keychain = "..."` dependency gets.
    Default,
}

/// "`package`'s normal dependency tree contains nothing matching `forbidden`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) package: &'static str,
    pub(crate) features: Features,
    /// Crate names; a trailing `*` matches any suffix.
    pub(crate) forbidden: Vec<&'static str>,
    /// Exceptions to `forbidden`, same syntax.
    pub(crate) allowed: Vec<&'static str>,
    /// Only the package's direct dependencies count (what it names in its own manifest).
    pub(crate) direct_only: bool,
    pub(crate) why: &'static str,
}

impl Rule {
    /// The `cargo tree` arguments that produce the text `violations` reads.
    pub(crate) fn tree_args(&self) -> Vec<&'static str> {
        let mut args = vec![
            "tree",
            "-p",
            self.package,
            "-e",
            "normal",
            "--prefix",
            "none",
        ];
        if self.features == Features::All {
            args.push("--all-features");
        }
        if self.direct_only {
            args.extend(["--depth", "1"]);
        }
        args
    }
}

/// The rules that apply to the crates present; crates not written yet are skipped.
pub(crate) fn rules(members: &[String]) -> Vec<Rule> {
    let present = |name: &str| members.iter().any(|m| m == name);
    let mut rules = Vec::new();

    if present("keychain-core") {
        let mut forbidden = BACKENDS.to_vec();
        forbidden.extend(SDKS);
        forbidden.extend(RUNTIMES_AND_HTTP);
        rules.push(Rule {
            package: "keychain-core",
            features: Features::All,
            forbidden,
            allowed: NOT_SDKS.to_vec(),
            direct_only: false,
            why: "keychain-core depends on no backend, no SDK, no async runtime, no HTTP client",
        });
    }

    for &backend in BACKENDS.iter().filter(|b| present(b)) {
        let forbidden = BACKENDS
            .iter()
            .copied()
            .filter(|&other| other != backend && !ALLOWED_BACKEND_EDGES.contains(&(backend, other)))
            .collect();
        rules.push(Rule {
            package: backend,
            features: Features::All,
            forbidden,
            allowed: Vec::new(),
            direct_only: false,
            why: "a backend never depends on another backend (except sc-hsm on pkcs11)",
        });
    }

    if present("keychain") {
        let mut forbidden: Vec<&str> = BACKENDS
            .iter()
            .copied()
            .filter(|&b| b != "keychain-pkcs8")
            .collect();
        forbidden.extend(SDKS);
        rules.push(Rule {
            package: "keychain",
            features: Features::Default,
            forbidden,
            allowed: NOT_SDKS.to_vec(),
            direct_only: false,
            why: "`keychain` with default features is the software backend only: \
                  no cloud SDK, no PKCS#11, no TPM library",
        });
    }

    if present("keychain-cli") {
        rules.push(Rule {
            package: "keychain-cli",
            features: Features::All,
            forbidden: BACKENDS.to_vec(),
            allowed: Vec::new(),
            direct_only: true,
            why: "the CLI is a client of the umbrella: it reaches backend crates only through \
                  `keychain`'s features",
        });
    }
    rules
}

/// Matches a crate name against a pattern where a trailing `*` matches any suffix.
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// Crate names in `cargo tree --prefix none` output, without the root (first line).
fn tree_crates(tree: &str) -> impl Iterator<Item = &str> {
    tree.lines()
        .filter_map(|line| line.split_whitespace().next())
        .skip(1)
}

/// Every forbidden crate in `tree`, each named once, with the rule that forbids it.
pub(crate) fn violations(rule: &Rule, tree: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for name in tree_crates(tree) {
        let forbidden = rule.forbidden.iter().any(|p| matches(p, name))
            && !rule.allowed.iter().any(|p| matches(p, name));
        if forbidden && !found.iter().any(|f| f == name) {
            found.push(name.to_string());
        }
    }
    found
        .into_iter()
        .map(|name| format!("{} depends on {name}: {}", rule.package, rule.why))
        .collect()
}

/// Workspace member names from `cargo metadata --no-deps --format-version 1`, read with string
/// search so xtask needs no JSON crate. Package ids come in two shapes:
/// `path+file:///ws/crates/name#0.1.0` (name = last path segment), or
/// `path+file:///ws/dir#name@0.1.0` when the directory name differs; older cargo wrote
/// `name 0.1.0 (path+file:///ws/dir)`.
pub(crate) fn workspace_members(metadata: &str) -> Vec<String> {
    let key = "\"workspace_members\":[";
    let Some(start) = metadata.find(key).map(|i| i + key.len()) else {
        return Vec::new();
    };
    let Some(len) = metadata[start..].find(']') else {
        return Vec::new();
    };
    metadata[start..start + len]
        .split(',')
        .map(|id| id.trim().trim_matches('"'))
        .filter(|id| !id.is_empty())
        .filter_map(package_name)
        .collect()
}

fn package_name(id: &str) -> Option<String> {
    if let Some((name, _)) = id.split_once(' ') {
        return Some(name.to_string());
    }
    let (url, fragment) = id.split_once('#')?;
    if let Some((name, _version)) = fragment.split_once('@') {
        return Some(name.to_string());
    }
    url.trim_end_matches('/')
        .rsplit('/')
        .next()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_workspace_members_in_every_id_shape() {
        let json = r#"{"packages":[{"name":"serde"}],"workspace_members":["path+file:///w/crates/keychain-core#0.1.0","path+file:///w/cli#keychain-cli@0.1.0","xtask 0.1.0 (path+file:///w/xtask)"],"resolve":null}"#;
        assert_eq!(
            workspace_members(json),
            ["keychain-core", "keychain-cli", "xtask"]
        );
        assert!(workspace_members("{}").is_empty());
    }

    #[test]
    fn rules_only_for_present_crates() {
        let r = rules(&names(&["keychain-core", "keychain-pkcs8", "xtask"]));
        let packages: Vec<&str> = r.iter().map(|r| r.package).collect();
        assert_eq!(packages, ["keychain-core", "keychain-pkcs8"]);
        assert!(rules(&names(&["xtask"])).is_empty());
    }

    #[test]
    fn core_may_not_pull_runtimes_sdks_or_backends() {
        let rule = &rules(&names(&["keychain-core"]))[0];
        let clean =
            "keychain-core v0.1.0 (/w/crates/keychain-core)\nder v0.8.3\naws-lc-rs v1.19.0\n";
        assert!(violations(rule, clean).is_empty());

        let dirty = "keychain-core v0.1.0 (/w/crates/keychain-core)\n\
                     tokio v1.48.0\naws-sdk-kms v1.2.0\ntokio v1.48.0 (*)\nkeychain-pkcs11 v0.1.0 (/w/x)\n";
        let v = violations(rule, dirty);
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(v[0].contains("depends on tokio"));
        assert!(v[1].contains("aws-sdk-kms"));
        assert!(v[2].contains("keychain-pkcs11"));
    }

    #[test]
    fn backends_stay_apart_except_sc_hsm_on_pkcs11() {
        let all = names(&["keychain-pkcs11", "keychain-sc-hsm", "keychain-aws"]);
        let r = rules(&all);
        let rule = |p: &str| r.iter().find(|r| r.package == p).cloned();

        let sc_hsm = rule("keychain-sc-hsm").map(|r| {
            violations(
                &r,
                "keychain-sc-hsm v0.1.0\nkeychain-pkcs11 v0.1.0\nkeychain-core v0.1.0\n",
            )
        });
        assert_eq!(sc_hsm.map(|v| v.len()), Some(0));

        let pkcs11 = rule("keychain-pkcs11")
            .map(|r| violations(&r, "keychain-pkcs11 v0.1.0\nkeychain-sc-hsm v0.1.0\n"));
        assert_eq!(pkcs11.map(|v| v.len()), Some(1));

        let aws = rule("keychain-aws")
            .map(|r| violations(&r, "keychain-aws v0.1.0\nkeychain-pkcs8 v0.1.0\n"));
        assert_eq!(aws.map(|v| v.len()), Some(1));
    }

    #[test]
    fn the_cli_reaches_backends_only_through_the_umbrella() {
        let r = rules(&names(&["keychain-cli"]));
        assert!(r[0].tree_args().ends_with(&["--depth", "1"]));
        let ok = "keychain-cli v0.1.0\nkeychain v0.1.0\nkeychain-crypto v0.1.0\nclap v4.5.0\n";
        assert!(violations(&r[0], ok).is_empty());
        let around = "keychain-cli v0.1.0\nkeychain v0.1.0\nkeychain-sc-hsm v0.1.0\n";
        let v = violations(&r[0], around);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("keychain-sc-hsm"));
    }

    #[test]
    fn a_backend_is_not_flagged_for_itself() {
        let r = rules(&names(&["keychain-tpm2"]));
        assert!(violations(&r[0], "keychain-tpm2 v0.1.0\nkeychain-tpm2 v0.1.0 (*)\n").is_empty());
    }

    #[test]
    fn umbrella_defaults_are_software_only() {
        let r = rules(&names(&["keychain"]));
        assert_eq!(r[0].features, Features::Default);
        assert!(!r[0].tree_args().contains(&"--all-features"));
        let ok = "keychain v0.1.0\nkeychain-pkcs8 v0.1.0\naws-lc-sys v0.30.0\n";
        assert!(violations(&r[0], ok).is_empty());
        let bad =
            "keychain v0.1.0\ncryptoki v0.12.0\nazure_core v0.1.0\ngoogle-cloud-kms-v1 v1.0.0\n";
        assert_eq!(violations(&r[0], bad).len(), 3);
    }
}
