//! The checks of `cinepipe doctor`, per service kind and per folder. Every request is bounded
//! in time and in the size of the answer read.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{BUSY_QUEUE, Check, MARKER_CONTRACT, MAX_SKEW_S, Status, Target};
use crate::clients::gpu;
use crate::spec::model::GpuSource;

/// Bound on each request of a check.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read (`/object_info` of a large install is a few MB).
const BODY_LIMIT: u64 = 32 * 1024 * 1024;

struct Answer {
    status: u16,
    body: Vec<u8>,
    /// The server's clock minus ours, in seconds (from `Date`, 1 s resolution).
    skew_s: Option<f64>,
    ms: u128,
}

async fn get(client: &reqwest::Client, url: &str, key: Option<&str>) -> Result<Answer, String> {
    let mut req = client.get(url).timeout(TIMEOUT);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let sent = jiff::Timestamp::now();
    let started = Instant::now();
    let resp = req.send().await.map_err(|e| {
        if e.is_connect() {
            "nothing answers (connection refused)".to_owned()
        } else if e.is_timeout() {
            format!("no answer within {} s", TIMEOUT.as_secs())
        } else {
            e.to_string()
        }
    })?;
    let ms = started.elapsed().as_millis();
    let status = resp.status().as_u16();
    let date = resp
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|d| d.to_str().ok())
        .map(str::to_owned);
    let body = crate::clients::read_body_within(resp, BODY_LIMIT)
        .await
        .map_err(|e| e.to_string())?;
    // The server stamped its Date between our send and now: compare with the midpoint.
    let mid = sent.as_millisecond() as f64 / 1000.0 + started.elapsed().as_secs_f64() / 2.0;
    let skew_s = date
        .and_then(|d| jiff::fmt::rfc2822::parse(&d).ok())
        .map(|z| z.timestamp().as_millisecond() as f64 / 1000.0 - mid);
    Ok(Answer {
        status,
        body,
        skew_s,
        ms,
    })
}

pub(super) fn check(
    subject: &str,
    target: &str,
    what: &str,
    status: Status,
    detail: String,
) -> Check {
    Check {
        subject: subject.to_owned(),
        target: target.to_owned(),
        check: what.to_owned(),
        status,
        detail,
        hint: None,
    }
}

pub(super) fn hint(mut c: Check, h: impl Into<String>) -> Check {
    c.hint = Some(h.into());
    c
}

/// `Date` is whole seconds: a skew within one second is not measurable.
fn clock(subject: &str, target: &str, skew: Option<f64>) -> Check {
    match skew {
        None => check(
            subject,
            target,
            "clock",
            Status::Skip,
            "the server sends no Date header".into(),
        ),
        Some(s) if s.abs() > MAX_SKEW_S => hint(
            check(
                subject,
                target,
                "clock",
                Status::Warn,
                format!("the server's clock is {s:+.0} s from this machine's"),
            ),
            "synchronise both clocks (chrony/systemd-timesyncd): telemetry compares their times",
        ),
        Some(s) => check(
            subject,
            target,
            "clock",
            Status::Ok,
            format!("within {:.0} s of this machine's", s.abs().max(1.0)),
        ),
    }
}

fn skipped(subject: &str, target: &str, what: &[&str]) -> Vec<Check> {
    what.iter()
        .map(|w| {
            check(
                subject,
                target,
                w,
                Status::Skip,
                "the server does not answer".into(),
            )
        })
        .collect()
}

/// An OpenAI-compatible server: reachable (`/models`), the model present, its version
/// (llama.cpp's `/props`), its clock.
pub(super) async fn llm(client: &reqwest::Client, t: &Target) -> Vec<Check> {
    let Target::Llm {
        name,
        base_url,
        model,
        api_key_env,
    } = t
    else {
        return Vec::new();
    };
    let base = base_url.trim_end_matches('/');
    let key = api_key_env.as_deref().and_then(|e| std::env::var(e).ok());
    let mut out = Vec::new();
    let models_url = format!("{base}/models");
    let answer = match get(client, &models_url, key.as_deref()).await {
        Ok(a) if (200..300).contains(&a.status) => a,
        Ok(a) => {
            let c = check(
                name,
                base_url,
                "reachable",
                Status::Fail,
                format!("GET /models answered HTTP {}", a.status),
            );
            out.push(hint(
                c,
                if matches!(a.status, 401 | 403) {
                    "the server wants an API key: set `api_key_env` and export that variable"
                } else {
                    "is `base_url` the API root (ending in /v1)?"
                },
            ));
            out.extend(skipped(name, base_url, &["model", "version"]));
            return out;
        }
        Err(why) => {
            out.push(hint(
                check(name, base_url, "reachable", Status::Fail, why),
                "start the server (scripts/start-llm-server --port PORT), or give the service a `launch` table",
            ));
            out.extend(skipped(name, base_url, &["model", "version", "clock"]));
            return out;
        }
    };
    out.push(check(
        name,
        base_url,
        "reachable",
        Status::Ok,
        format!("GET /models: HTTP {} in {} ms", answer.status, answer.ms),
    ));
    let ids: Vec<String> = serde_json::from_slice::<Value>(&answer.body)
        .ok()
        .and_then(|v| {
            v.get("data")?.as_array().map(|a| {
                a.iter()
                    .filter_map(|m| m.get("id")?.as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default();
    out.push(match model {
        Some(m) if ids.iter().any(|id| id == m) => check(
            name,
            base_url,
            "model",
            Status::Ok,
            format!("`{m}` is served"),
        ),
        Some(m) => hint(
            check(
                name,
                base_url,
                "model",
                Status::Fail,
                format!(
                    "`{m}` is not among the server's models ({})",
                    if ids.is_empty() {
                        "none listed".to_owned()
                    } else {
                        ids.join(", ")
                    }
                ),
            ),
            "load the model on the server, or set the service's `model` to one it serves",
        ),
        None => check(
            name,
            base_url,
            "model",
            Status::Ok,
            format!("serves {}", ids.join(", ")),
        ),
    });
    // llama.cpp's server reports its build at the root's /props; others do not say.
    let root = base.strip_suffix("/v1").unwrap_or(base);
    let version = match get(client, &format!("{root}/props"), key.as_deref()).await {
        Ok(a) if a.status == 200 => serde_json::from_slice::<Value>(&a.body)
            .ok()
            .and_then(|v| {
                v.get("build_info")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .map(|b| format!("llama.cpp {b}")),
        _ => None,
    };
    out.push(check(
        name,
        base_url,
        "version",
        Status::Ok,
        version.unwrap_or_else(|| "not reported (no llama.cpp /props)".into()),
    ));
    out.push(clock(name, base_url, answer.skew_s));
    out
}

/// A ComfyUI server: reachable and its version (`/system_stats`), the GPU and where its
/// reading came from, the queue, the done-marker node, the output folder, its clock.
pub(super) async fn comfy(client: &reqwest::Client, t: &Target, min_free_gb: f64) -> Vec<Check> {
    let Target::Comfy {
        name,
        url,
        output_dir,
    } = t
    else {
        return Vec::new();
    };
    let base = url.trim_end_matches('/');
    let mut out = Vec::new();
    let stats = match get(client, &format!("{base}/system_stats"), None).await {
        Ok(a) if a.status == 200 => match serde_json::from_slice::<Value>(&a.body) {
            Ok(v) if v.get("system").is_some() => (a, v),
            _ => {
                out.push(hint(
                    check(
                        name,
                        url,
                        "reachable",
                        Status::Fail,
                        "GET /system_stats did not answer ComfyUI's JSON".into(),
                    ),
                    "is this URL a ComfyUI server (not a proxy's login page)?",
                ));
                out.extend(skipped(name, url, &["gpu", "queue", "done-marker node"]));
                return out;
            }
        },
        Ok(a) => {
            out.push(hint(
                check(
                    name,
                    url,
                    "reachable",
                    Status::Fail,
                    format!("GET /system_stats answered HTTP {}", a.status),
                ),
                "is the URL the server's root?",
            ));
            out.extend(skipped(name, url, &["gpu", "queue", "done-marker node"]));
            return out;
        }
        Err(why) => {
            out.push(hint(
                check(name, url, "reachable", Status::Fail, why),
                "start ComfyUI (scripts/start-comfyui --port PORT --output-dir DIR --custom-nodes comfyui_nodes), or give the service a `launch` table",
            ));
            out.extend(skipped(
                name,
                url,
                &["gpu", "queue", "done-marker node", "clock"],
            ));
            return out;
        }
    };
    let (answer, stats) = stats;
    let sys = &stats["system"];
    let version = sys["comfyui_version"]
        .as_str()
        .map(|v| format!("ComfyUI {v}"))
        .unwrap_or_else(|| "ComfyUI (version not reported)".into());
    let python = sys["python_version"]
        .as_str()
        .and_then(|p| p.split_whitespace().next())
        .map(|p| format!(", Python {p}"))
        .unwrap_or_default();
    out.push(check(
        name,
        url,
        "reachable",
        Status::Ok,
        format!("{version}{python}; /system_stats in {} ms", answer.ms),
    ));
    out.push(gpu_check(client, name, url, &stats).await);
    out.push(queue(client, name, url).await);
    out.push(node(client, name, url).await);
    out.push(clock(name, url, answer.skew_s));
    match output_dir {
        Some(dir) => out.extend(super::folders::folder(name, dir, min_free_gb, true)),
        None => out.push(check(
            name,
            url,
            "output folder",
            Status::Skip,
            "no `output_dir`: markers and frames are fetched over HTTP".into(),
        )),
    }
    out
}

async fn gpu_check(client: &reqwest::Client, name: &str, url: &str, stats: &Value) -> Check {
    let snap = gpu::snapshot(client, Some(url), GpuSource::Auto).await;
    let device = stats["devices"]
        .as_array()
        .and_then(|d| d.first())
        .cloned()
        .unwrap_or(Value::Null);
    let kind = device["type"].as_str().unwrap_or("unknown");
    match snap.reading {
        Some(r) => {
            let source = serde_json::to_value(snap.source)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            check(
                name,
                url,
                "gpu",
                Status::Ok,
                format!(
                    "{}: {} of {} MiB in use (read by {source})",
                    r.name.unwrap_or_else(|| "GPU".into()),
                    r.used_mb,
                    r.total_mb.map_or("?".into(), |t| t.to_string())
                ),
            )
        }
        None => {
            let tried: Vec<String> = snap
                .failures
                .iter()
                .map(|(s, why)| {
                    let s = serde_json::to_value(s)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    format!("{s}: {why}")
                })
                .collect();
            hint(
                check(
                    name,
                    url,
                    "gpu",
                    Status::Warn,
                    format!(
                        "no GPU reading; ComfyUI's device is `{kind}` ({})",
                        tried.join("; ")
                    ),
                ),
                "on a GPU box: install the NVIDIA driver (NVML, nvidia-smi); on a CPU server this is expected and renders are slow",
            )
        }
    }
}

async fn queue(client: &reqwest::Client, name: &str, url: &str) -> Check {
    let base = url.trim_end_matches('/');
    let q = get(client, &format!("{base}/queue"), None)
        .await
        .ok()
        .filter(|a| a.status == 200)
        .and_then(|a| serde_json::from_slice::<Value>(&a.body).ok());
    let len = |v: &Value, k: &str| v[k].as_array().map_or(0, Vec::len) as u64;
    match q {
        Some(v) => {
            let (running, pending) = (len(&v, "queue_running"), len(&v, "queue_pending"));
            let c = check(
                name,
                url,
                "queue",
                if pending > BUSY_QUEUE {
                    Status::Warn
                } else {
                    Status::Ok
                },
                format!("{running} running, {pending} waiting"),
            );
            if pending > BUSY_QUEUE {
                hint(
                    c,
                    "a run's scenes wait behind these prompts: wait, clear the queue, or add a server to the pool",
                )
            } else {
                c
            }
        }
        None => hint(
            check(
                name,
                url,
                "queue",
                Status::Warn,
                "GET /queue gave no queue".into(),
            ),
            "an old or modified ComfyUI: the queue stage still works through /history",
        ),
    }
}

/// The contract a node's description states, `(marker contract N)`.
pub(super) fn stated_contract(description: &str) -> Option<u32> {
    let rest = description.split("(marker contract ").nth(1)?;
    rest.split(')').next()?.trim().parse().ok()
}

async fn node(client: &reqwest::Client, name: &str, url: &str) -> Check {
    let base = url.trim_end_matches('/');
    let install = "install it: `cinepipe install-node COMFYUI_DIR`, then restart ComfyUI (workflows without it need `on_timeout = \"forced-copy\"`)";
    // One class's entry, not the whole (500 KB on upstream ComfyUI) listing.
    let answer = get(client, &format!("{base}/object_info/WriteDoneMarker"), None).await;
    let entry = answer
        .ok()
        .filter(|a| a.status == 200)
        .and_then(|a| serde_json::from_slice::<Value>(&a.body).ok())
        .and_then(|v| v.get("WriteDoneMarker").cloned());
    let Some(entry) = entry else {
        return hint(
            check(
                name,
                url,
                "done-marker node",
                Status::Fail,
                "WriteDoneMarker is not among the server's nodes".into(),
            ),
            install,
        );
    };
    let description = entry["description"].as_str().unwrap_or_default();
    match stated_contract(description) {
        Some(v) if v == MARKER_CONTRACT => check(
            name,
            url,
            "done-marker node",
            Status::Ok,
            format!("WriteDoneMarker, marker contract {v}"),
        ),
        Some(v) => hint(
            check(
                name,
                url,
                "done-marker node",
                Status::Fail,
                format!(
                    "WriteDoneMarker writes marker contract {v}; this cinepipe reads {MARKER_CONTRACT}"
                ),
            ),
            install,
        ),
        None => hint(
            check(
                name,
                url,
                "done-marker node",
                Status::Warn,
                "WriteDoneMarker is deployed, but does not state its marker contract (an older copy)".into(),
            ),
            install,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_states_its_marker_contract_in_its_description() {
        assert_eq!(
            stated_contract(
                "Saves the frames like SaveImage, then writes <prefix>.done atomically (marker contract 1)."
            ),
            Some(1)
        );
        assert_eq!(stated_contract("(marker contract 12)"), Some(12));
        assert_eq!(stated_contract("Saves the frames."), None);
        assert_eq!(stated_contract("(marker contract x)"), None);
    }
}
