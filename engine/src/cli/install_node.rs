//! `cinepipe install-node`: copy the ComfyUI node package into a ComfyUI's `custom_nodes/`.

use std::path::Path;

use super::output::outln;
use crate::exit::ExitCode;

/// `cinepipe install-node`: says what it did on stdout, why it could not on stderr.
pub(crate) fn install_node(comfyui_dir: &Path) -> ExitCode {
    use crate::custom_nodes::{self, Action};
    match custom_nodes::install(comfyui_dir) {
        Ok(done) => {
            let what = match done.action {
                Action::Installed => "installed",
                Action::Updated => "updated",
                Action::UpToDate => "up to date:",
            };
            outln!(
                "{what} {} (nodes WriteDoneMarker and SceneCardFrames, {} files)",
                done.dest.display(),
                custom_nodes::FILES.len()
            );
            if done.action != Action::UpToDate {
                outln!("restart ComfyUI to load it");
            }
            ExitCode::Success
        }
        Err(e) => {
            eprintln!("error: {e}");
            if e.is_usage() {
                ExitCode::Usage
            } else {
                ExitCode::Io
            }
        }
    }
}
