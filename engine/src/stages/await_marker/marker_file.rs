//! Reading and checking a done marker's contents.

use std::path::Path;

use serde_json::Value;

use super::MAX_MARKER_BYTES;
use crate::artifact_metadata::Timestamp;
use crate::stages::output::MarkerBody;

/// Why a done marker is not valid.
#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error("{0}")]
    Read(std::io::Error),
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("not a JSON object")]
    NotObject,
    #[error("no `Timestamp` string")]
    NoTimestamp,
    #[error("`Timestamp` {text:?} is not an ISO-8601 instant: {error}")]
    BadTimestamp { text: String, error: jiff::Error },
    #[error("`FrameCount` is not a non-negative integer")]
    BadFrameCount,
    #[error("`Files` holds something other than plain file names")]
    FilesNotPlainNames,
    #[error("`Files` lists {listed} files but `FrameCount` is {frame_count}")]
    FilesMismatch { listed: usize, frame_count: u32 },
    #[error("`Files` is not a list")]
    FilesNotList,
}

/// Reads and checks a marker: a JSON object with an RFC 3339 `Timestamp` and a non-negative
/// integer `FrameCount`; `Files`, when present, lists `FrameCount` base names.
pub fn parse_marker(bytes: &[u8]) -> Result<MarkerBody, MarkerError> {
    let v: Value = serde_json::from_slice(bytes).map_err(MarkerError::NotJson)?;
    let obj = v.as_object().ok_or(MarkerError::NotObject)?;
    let ts = obj
        .get("Timestamp")
        .and_then(Value::as_str)
        .ok_or(MarkerError::NoTimestamp)?;
    let timestamp = ts
        .parse::<Timestamp>()
        .map_err(|error| MarkerError::BadTimestamp {
            text: ts.to_owned(),
            error,
        })?;
    let frame_count = obj
        .get("FrameCount")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(MarkerError::BadFrameCount)?;
    let files = match obj.get("Files") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => {
            let names: Option<Vec<String>> = a
                .iter()
                .map(|f| {
                    f.as_str()
                        .filter(|s| !s.is_empty() && !s.contains(['/', '\\']) && *s != "..")
                        .map(str::to_owned)
                })
                .collect();
            let names = names.ok_or(MarkerError::FilesNotPlainNames)?;
            if names.len() != frame_count as usize {
                return Err(MarkerError::FilesMismatch {
                    listed: names.len(),
                    frame_count,
                });
            }
            Some(names)
        }
        Some(_) => return Err(MarkerError::FilesNotList),
    };
    Ok(MarkerBody {
        timestamp,
        frame_count,
        files,
    })
}

pub(super) fn read_marker(path: &Path) -> Result<MarkerBody, MarkerError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(MarkerError::Read)?;
    let mut bytes = Vec::new();
    f.take(MAX_MARKER_BYTES)
        .read_to_end(&mut bytes)
        .map_err(MarkerError::Read)?;
    parse_marker(&bytes)
}
