//! The on-disk answer cache: its entries and the key over everything that shapes an answer.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::clients::openai::{ChatAnswer, ChatRequest};

/// Bumped when the cache entry's shape or the key's recipe changes: old entries then miss.
pub(super) const CACHE_FORMAT: u32 = 1;

/// The cache key: a SHA-256 over everything that shapes the answer (not `stream`: a streamed
/// and a plain answer to the same request are the same answer).
pub(super) fn cache_key(
    base_url: &str,
    req: &ChatRequest,
    template_version: Option<&str>,
    salt: Option<&str>,
) -> String {
    let material = json!({
        "format": CACHE_FORMAT,
        "base_url": base_url,
        "model": req.model,
        "messages": req.messages,
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "seed": req.seed,
        "response_format": req.response_format,
        "template_version": template_version,
        "salt": salt,
    });
    let digest = Sha256::digest(material.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A cache entry on disk.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct CacheEntry {
    pub(super) format: u32,
    pub(super) service: String,
    pub(super) model: String,
    pub(super) answer: ChatAnswer,
    pub(super) output: Value,
}

pub(super) fn cache_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.json"))
}
