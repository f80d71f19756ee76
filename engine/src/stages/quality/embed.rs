//! Embeddings for the quality stage: one `/embeddings` request to an `openai` service for a
//! batch of texts, and the cosine of two vectors.

use serde_json::{Value, json};

use crate::exec::StageContext;
use crate::spec::model::Service;

/// Why texts could not be embedded.
#[derive(Debug, thiserror::Error)]
pub(super) enum EmbeddingError {
    #[error("`{service}` is not an `openai` service")]
    NotOpenai { service: String },
    #[error(transparent)]
    Client(#[from] crate::clients::HttpClientError),
    #[error(transparent)]
    Send(#[from] reqwest::Error),
    #[error("{url} answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error(transparent)]
    Body(#[from] crate::clients::BodyError),
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("cancelled")]
    Cancelled,
    #[error("{url} answered {got} embeddings for {asked} texts")]
    Missing {
        url: String,
        got: usize,
        asked: usize,
    },
    #[error("the embeddings are empty, zero or of different sizes")]
    Unusable,
}

/// The embeddings of `texts`, in order, from an `openai` service's `/embeddings` (one request).
pub(super) async fn embed(
    ctx: &StageContext,
    service: &str,
    texts: &[&str],
) -> Result<Vec<Vec<f64>>, EmbeddingError> {
    let Some(Service::Openai(s)) = ctx.spec.spec.services.get(service) else {
        return Err(EmbeddingError::NotOpenai {
            service: service.to_owned(),
        });
    };
    let url = format!("{}/embeddings", s.base_url.trim_end_matches('/'));
    let client = crate::clients::http()?;
    let mut req = client
        .post(&url)
        .timeout(std::time::Duration::try_from_secs_f64(s.timeout_s).unwrap_or_default())
        .json(&json!({ "model": s.model, "input": texts }));
    if let Some(var) = &s.api_key_env
        && let Ok(key) = std::env::var(var)
    {
        req = req.bearer_auth(key);
    }
    let send = async {
        let resp = req.send().await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(EmbeddingError::Status {
                url: url.clone(),
                status,
            });
        }
        // A story's embeddings are a few thousand floats per scene; far below this bound.
        let body = crate::clients::read_body_within(resp, 64 * 1024 * 1024).await?;
        serde_json::from_slice::<Value>(&body).map_err(EmbeddingError::NotJson)
    };
    let body = tokio::select! {
        r = send => r?,
        () = ctx.cancel.cancelled() => return Err(EmbeddingError::Cancelled),
    };
    // The OpenAI shape: `data[i].embedding`, with `data[i].index` saying which input it is.
    let mut vectors: Vec<Option<Vec<f64>>> = vec![None; texts.len()];
    for (pos, item) in body
        .get("data")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .map_or(pos, |i| usize::try_from(i).unwrap_or(usize::MAX));
        let vector: Option<Vec<f64>> = item
            .get("embedding")
            .and_then(Value::as_array)
            .and_then(|v| v.iter().map(Value::as_f64).collect());
        if let (Some(slot), Some(v)) = (vectors.get_mut(index), vector) {
            *slot = Some(v);
        }
    }
    let got = vectors.iter().flatten().count();
    if got != texts.len() {
        return Err(EmbeddingError::Missing {
            url,
            got,
            asked: texts.len(),
        });
    }
    let vectors: Vec<Vec<f64>> = vectors.into_iter().flatten().collect();
    if vectors
        .iter()
        .any(|v| v.is_empty() || v.len() != vectors[0].len() || v.iter().all(|x| *x == 0.0))
    {
        return Err(EmbeddingError::Unusable);
    }
    Ok(vectors)
}

/// Cosine similarity of the embeddings of `a` and `b` (one request, both inputs).
pub(super) async fn embed_cosine(
    ctx: &StageContext,
    service: &str,
    a: &str,
    b: &str,
) -> Result<f64, EmbeddingError> {
    let v = embed(ctx, service, &[a, b]).await?;
    match v.as_slice() {
        [x, y] => cosine(x, y).ok_or(EmbeddingError::Unusable),
        _ => Err(EmbeddingError::Unusable),
    }
}

/// Cosine similarity; `None` for vectors of different lengths or zero length.
pub fn cosine(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    (na > 0.0 && nb > 0.0).then(|| (dot / (na * nb)).clamp(-1.0, 1.0))
}
