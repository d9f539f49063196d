//! Progress of long work on a terminal (`ingest` of a cupboard of scans, `model train`):
//! items done out of the total, pages read and pages per second, the time left, and the
//! items flagged for a clerk so far. Drawn on stderr with `indicatif`, and only when both
//! stdout and stderr are terminals and the output is not JSON: a pipe, a log file or a
//! script sees exactly what it saw before.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// What a display counts: items (files, tickets) or rounds of training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Items,
    Rounds,
    /// Tickets read again; the flagged count is of those whose topic moved.
    Tickets,
}

pub struct Progress {
    bar: Option<ProgressBar>,
    unit: Unit,
    pages: u64,
    flagged: u64,
    started: Instant,
}

/// Whether a progress display may be drawn: a person is watching both streams, and the
/// output is for reading, not for a program.
pub fn wanted(json: bool) -> bool {
    !json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

impl Progress {
    /// A display of `total` steps, drawn only when [`wanted`]; else every call does nothing.
    pub fn new(total: u64, unit: Unit, json: bool) -> Progress {
        Progress::with_target(total, unit, wanted(json).then(ProgressDrawTarget::stderr))
    }

    fn with_target(total: u64, unit: Unit, target: Option<ProgressDrawTarget>) -> Progress {
        let bar = target.map(|target| {
            let bar = ProgressBar::with_draw_target(Some(total), target);
            let noun = match unit {
                Unit::Items => "items",
                Unit::Rounds => "rounds",
                Unit::Tickets => "tickets",
            };
            let style = ProgressStyle::with_template(&format!(
                "{{bar:30.cyan/blue}} {{pos}}/{{len}} {noun}{{msg}} · {{eta}} left"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("█▉▊▋▌▍▎▏ ");
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Progress {
            bar,
            unit,
            pages: 0,
            flagged: 0,
            started: Instant::now(),
        }
    }

    /// One item done: `pages` read in it, and whether it was flagged for a clerk.
    pub fn item(&mut self, pages: u64, flagged: bool) {
        self.pages += pages;
        self.flagged += u64::from(flagged);
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(self.summary());
        }
    }

    /// One round (of training) done.
    pub fn round(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// The counts after the item count: pages, pages per second, flagged items.
    pub fn summary(&self) -> String {
        if self.unit == Unit::Tickets {
            return format!(" · {} moved", self.flagged);
        }
        if self.unit != Unit::Items {
            return String::new();
        }
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let mut s = String::new();
        if self.pages > 0 {
            s.push_str(&format!(
                " · {} pages · {:.1} pages/s",
                self.pages,
                self.pages as f64 / secs
            ));
        }
        s.push_str(&format!(" · {} flagged", self.flagged));
        s
    }

    /// Runs `f` (which prints) with the display cleared, so lines do not mix with it.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Removes the display.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_pages_and_flagged_items_without_drawing() {
        let mut p = Progress::with_target(3, Unit::Items, None);
        p.item(2, false);
        p.item(1, true);
        p.item(0, true);
        assert!(p.bar.is_none());
        assert_eq!((p.pages, p.flagged), (3, 2));
        let s = p.summary();
        assert!(s.contains("3 pages") && s.contains("2 flagged"), "{s}");
    }

    #[test]
    fn json_output_never_draws() {
        assert!(!wanted(true));
        assert!(Progress::new(10, Unit::Items, true).bar.is_none());
    }
}
