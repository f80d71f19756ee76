//! Test support, not API: the spec builder, the scripted stage and the stage contexts that the
//! unit tests, the integration tests (`tests/`) and the benches (`engine/benches/`) share. It
//! lives in the library because all three must reach it; nothing in the engine uses it.

pub mod bench;
mod context;
mod frames;
pub mod measure;
mod scripted;
mod spec;

use std::path::{Path, PathBuf};

pub use context::{ContextExt, context};
pub use frames::{flat, moving_square, write_huge_header_png, write_png};
pub use scripted::{LoggedAttempt, Scripted, Step, story};
pub use spec::{NOWHERE, SCENE_PIPELINE, SpecBuilder, comfyui, openai};

/// The project root (the workspace folder), where `prompts/`, `workflows/` and `specs/` are.
pub fn project_root() -> PathBuf {
    let engine = Path::new(env!("CARGO_MANIFEST_DIR"));
    engine.parent().unwrap_or(engine).to_path_buf()
}

#[cfg(test)]
mod tests;
