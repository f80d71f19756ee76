//! The run folder, one module for everyone who reads or writes it: its layout (`layout`), the
//! event journal (`event`, `journal`) and the folder read back as a history (`history`). The
//! executor writes it, a resume replays it, and `telemetry`, `show` and `cinepipe runs` read it.

pub mod event;
pub mod history;
pub mod journal;
mod layout;
pub mod lock;

pub use layout::{
    EVENTS, MANIFEST, Manifest, RESOLVED_SPEC, RunDir, RunDirError, new_run_id, resolved,
};
