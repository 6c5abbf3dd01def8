//! Exit codes: one per [`ErrorKind`], so scripts can branch without parsing messages.

use keychain::ErrorKind;

/// Exit code of a successful run.
pub(crate) const OK: u8 = 0;
/// Exit code clap uses for a command line it cannot parse.
pub(crate) const USAGE: u8 = 2;

/// The exit codes other than success and usage, in the order `--help` lists them.
const TABLE: &[(u8, &str, &[ErrorKind])] = &[
    (
        1,
        "unexpected error (a bug, or a provider error with no better mapping)",
        &[ErrorKind::Unexpected],
    ),
    (
        3,
        "not found: no such key, version, file or backend",
        &[ErrorKind::NotFound],
    ),
    (4, "already exists", &[ErrorKind::AlreadyExists]),
    (
        5,
        "invalid input: malformed key name, digest, encoding or option; an output naming an \
         input; a directory where a file belongs; an input over a limit",
        &[ErrorKind::InvalidInput],
    ),
    (
        6,
        "invalid signature: the signature does not verify",
        &[ErrorKind::InvalidSignature],
    ),
    (
        7,
        "unauthenticated: wrong password, PIN or token",
        &[ErrorKind::Unauthenticated],
    ),
    (8, "permission denied", &[ErrorKind::PermissionDenied]),
    (9, "locked: key, token or PIN locked", &[ErrorKind::Locked]),
    (
        10,
        "unsupported: operation, algorithm or backend type not available",
        &[ErrorKind::Unsupported],
    ),
    (
        11,
        "unavailable, timeout or rate limited (retryable); `doctor` found an unhealthy backend",
        &[
            ErrorKind::Unavailable,
            ErrorKind::Timeout,
            ErrorKind::RateLimited,
        ],
    ),
    (
        12,
        "integrity: tampered ciphertext, wrong AAD, corrupt key file",
        &[ErrorKind::Integrity],
    ),
    (13, "capacity exceeded", &[ErrorKind::CapacityExceeded]),
];

/// The exit code for an error of `kind`.
pub(crate) fn code(kind: ErrorKind) -> u8 {
    TABLE
        .iter()
        .find(|(_, _, kinds)| kinds.contains(&kind))
        .map_or(1, |(code, _, _)| *code)
}

/// The exit-code table shown by `keychain --help`.
pub(crate) fn help() -> String {
    let mut text = String::from("Exit codes:\n");
    text.push_str(&format!("  {OK:>3}  success\n"));
    let mut rows: Vec<(u8, &str)> = TABLE.iter().map(|(c, d, _)| (*c, *d)).collect();
    rows.push((
        USAGE,
        "usage: the command line is malformed (unknown option, missing argument, bad value)",
    ));
    rows.sort_by_key(|(c, _)| *c);
    for (code, description) in rows {
        text.push_str(&format!("  {code:>3}  {description}\n"));
    }
    text.push_str(
        "\nErrors print `error: ...` on stderr; with --output json they print \
         {\"error\": {...}} on stderr instead (usage errors too). Messages never contain a \
         secret.\n\
         \nConfiguration: --config FILE, else $KEYCHAIN_CONFIG, else the embedded default: \
         one software backend `local` in ./.keychain, password from $KEYCHAIN_PASSWORD \
         (prompted on the terminal when unset).",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_per_kind_and_avoid_usage() {
        let kinds = [
            ErrorKind::NotFound,
            ErrorKind::AlreadyExists,
            ErrorKind::Unsupported,
            ErrorKind::InvalidInput,
            ErrorKind::InvalidSignature,
            ErrorKind::Unauthenticated,
            ErrorKind::PermissionDenied,
            ErrorKind::Locked,
            ErrorKind::Integrity,
            ErrorKind::CapacityExceeded,
            ErrorKind::Unexpected,
            ErrorKind::Unavailable,
        ];
        let mut codes: Vec<u8> = kinds.iter().map(|k| code(*k)).collect();
        assert!(!codes.contains(&OK) && !codes.contains(&USAGE));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
        assert_eq!(code(ErrorKind::Timeout), code(ErrorKind::Unavailable));
        assert!(help().contains("  6  invalid signature"));
    }
}
