//! The terminal prompt behind `SecretSource::Prompt`: reads from the TTY without echo, and
//! refuses (rather than hangs) when stdin is not a terminal.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keychain::{Error, ErrorKind, SecretString};

/// Set when a configured key directory does not exist yet: the password typed now encrypts every
/// key written there, so it is asked twice.
static CONFIRM: AtomicBool = AtomicBool::new(false);

/// Asks for every prompted password twice (a new store).
pub(crate) fn confirm_new_passwords() {
    CONFIRM.store(true, Ordering::Relaxed);
}

/// Installs the hook for the whole process: backends opened with `password = "prompt"` ask here,
/// twice when their store is new.
pub(crate) fn install() {
    keychain::set_prompt_hook(Arc::new(|what: &str| {
        ask(what, CONFIRM.load(Ordering::Relaxed))
    }));
}

/// Asks for `what` (a description such as "password for the key directory ./.keychain"), twice
/// when `confirm`.
///
/// # Errors
/// `Unsupported` when stdin is not a terminal; `InvalidInput` when the two entries differ; I/O
/// errors by kind.
pub(crate) fn ask(what: &str, confirm: bool) -> keychain::Result<SecretString> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::unsupported(format!(
            "{what}: cannot prompt because stdin is not a terminal; set KEYCHAIN_PASSWORD \
             or configure the secret as {{ env = \"VAR\" }} or {{ file = \"PATH\" }}"
        )));
    }
    let read = |label: &str| {
        rpassword::prompt_password(label)
            .map(SecretString::new)
            .map_err(|e| Error::from(e).with_context(format_args!("reading the {what}")))
    };
    let first = read(&format!("{}: ", capitalized(what)))?;
    if confirm {
        let again = read("Repeat it to confirm (the store is new): ")?;
        if again.expose() != first.expose() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{what}: the two entries differ"),
            ));
        }
    }
    Ok(first)
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
