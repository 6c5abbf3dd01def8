//! A spinner on stderr for steps that take more than a moment; invisible when stderr is not a
//! terminal (indicatif hides its stderr target then), so pipes and logs stay clean.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A running spinner; cleared when finished or dropped.
#[derive(Debug)]
pub(crate) struct Spinner(ProgressBar);

impl Spinner {
    /// Starts a spinner showing `message` and the elapsed time.
    pub(crate) fn start(message: impl Into<String>) -> Self {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message.into());
        if !bar.is_hidden() {
            bar.enable_steady_tick(Duration::from_millis(100));
        }
        Self(bar)
    }

    /// Changes the message.
    pub(crate) fn set_message(&self, message: impl Into<String>) {
        self.0.set_message(message.into());
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
