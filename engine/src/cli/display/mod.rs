//! What `cinepipe run` shows of its run while it runs, each an observer of the run's events:
//! the live display on a terminal, plain lines elsewhere, JSON lines for log collectors; and
//! what `cinepipe sweep` shows of its runs.

mod json_lines;
mod lines;
mod live;
mod sweep;

pub use json_lines::JsonLines;
pub use lines::Lines;
pub use live::Live;
pub(crate) use live::log_writer;
pub use sweep::{Silent, SweepLines, SweepLive};
