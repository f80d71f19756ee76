//! Reading and checking a done marker's contents.

use std::path::Path;

use serde_json::Value;

use super::MAX_MARKER_BYTES;
use crate::stages::output::MarkerBody;
use crate::telemetry::Timestamp;

/// Reads and checks a marker: a JSON object with an RFC 3339 `Timestamp` and a non-negative
/// integer `FrameCount`; `Files`, when present, lists `FrameCount` base names.
pub fn parse_marker(bytes: &[u8]) -> Result<MarkerBody, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let ts = obj
        .get("Timestamp")
        .and_then(Value::as_str)
        .ok_or("no `Timestamp` string")?;
    let timestamp = ts
        .parse::<Timestamp>()
        .map_err(|e| format!("`Timestamp` {ts:?} is not an ISO-8601 instant: {e}"))?;
    let frame_count = obj
        .get("FrameCount")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or("`FrameCount` is not a non-negative integer")?;
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
            let names = names.ok_or("`Files` holds something other than plain file names")?;
            if names.len() != frame_count as usize {
                return Err(format!(
                    "`Files` lists {} files but `FrameCount` is {frame_count}",
                    names.len()
                ));
            }
            Some(names)
        }
        Some(_) => return Err("`Files` is not a list".to_owned()),
    };
    Ok(MarkerBody {
        timestamp,
        frame_count,
        files,
    })
}

pub(super) fn read_marker(path: &Path) -> Result<MarkerBody, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    f.take(MAX_MARKER_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    parse_marker(&bytes)
}
