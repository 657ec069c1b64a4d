//! Progress of long work on a terminal; nothing on a pipe.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar over `total` facts with the rate and the time left,
/// drawn on standard error when it is a terminal, hidden otherwise.
pub(crate) fn facts_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40} {human_pos}/{human_len} facts  {per_sec}  {eta} left",
    ) {
        bar.set_style(style);
    }
    bar
}
