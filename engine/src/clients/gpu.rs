//! GPU memory readings around a ComfyUI workflow: NVML (loaded at run time), else ComfyUI's
//! `/system_stats`, else `nvidia-smi`, else none.
//!
//! The `queue` stage calls [`snapshot`] before it queues and after the workflow ends, then
//! [`around`] to turn the two readings into the scene's `GPU` telemetry and its fallback notes.
//! Nothing here fails a run: a source that does not answer is a note, and with no source the
//! telemetry keeps every field, as null.
//!
//! Memory is in MiB (what `nvidia-smi` prints as "MiB" and the seeds call MB), from every source.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::artifact_metadata::{GpuReadingSource, GpuTelemetry};
use crate::spec::model::GpuSource;

const MIB: u64 = 1024 * 1024;

/// Bound on one `/system_stats` request or one `nvidia-smi` run: a reading is not worth
/// delaying a scene for.
pub const SOURCE_TIMEOUT: Duration = Duration::from_secs(5);

/// One GPU reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The GPU's name (`NVIDIA H100 80GB HBM3`).
    pub name: Option<String>,
    /// Memory in use, in MiB.
    pub used_mb: i64,
    /// Memory installed, in MiB.
    pub total_mb: Option<i64>,
}

/// What one snapshot found: the reading and its source (or none), and why each source tried
/// before it did not answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub source: GpuReadingSource,
    pub reading: Option<Reading>,
    /// `(source, why it did not answer)`, in the order the sources were tried.
    pub failures: Vec<(GpuReadingSource, String)>,
}

impl Snapshot {
    fn none(failures: Vec<(GpuReadingSource, String)>) -> Snapshot {
        Snapshot {
            source: GpuReadingSource::None,
            reading: None,
            failures,
        }
    }
}

/// Why a source gave no reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Unavailable(String),
    #[error("malformed answer: {0}")]
    Malformed(String),
    #[error("no GPU: {0}")]
    NoGpu(String),
}

/// The sources to try for a preference, in order. In `auto` mode a ComfyUI server on another
/// host is asked first and the local sources (NVML, `nvidia-smi`) are skipped: they would
/// describe this machine's GPU, not the server's.
pub fn chain(pref: GpuSource, comfy_url: Option<&str>) -> Vec<GpuReadingSource> {
    use GpuReadingSource as S;
    match pref {
        GpuSource::Auto if comfy_url.is_some_and(|u| !is_local(u)) => vec![S::SystemStats],
        GpuSource::Auto => vec![S::Nvml, S::SystemStats, S::NvidiaSmi],
        GpuSource::Nvml => vec![S::Nvml],
        GpuSource::SystemStats => vec![S::SystemStats],
        GpuSource::NvidiaSmi => vec![S::NvidiaSmi],
        GpuSource::None => vec![],
    }
}

/// Whether a URL's host is this machine (loopback or `localhost`).
pub fn is_local(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = u.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Takes one reading: the first source of [`chain`] that answers. `comfy_url` is the ComfyUI
/// server the workflow runs on (`http://host:port`), for `/system_stats`.
pub async fn snapshot(
    client: &reqwest::Client,
    comfy_url: Option<&str>,
    pref: GpuSource,
) -> Snapshot {
    let mut failures = Vec::new();
    if pref == GpuSource::Auto && comfy_url.is_some_and(|u| !is_local(u)) {
        failures.push((
            GpuReadingSource::Nvml,
            "skipped: the ComfyUI server is on another host, and NVML would read this machine's GPU".to_owned(),
        ));
    }
    for source in chain(pref, comfy_url) {
        let result = match source {
            GpuReadingSource::Nvml => nvml().await,
            GpuReadingSource::SystemStats => match comfy_url {
                Some(url) => system_stats(client, url).await,
                None => Err(SourceError::Unavailable(
                    "no ComfyUI server to ask".to_owned(),
                )),
            },
            GpuReadingSource::NvidiaSmi => nvidia_smi().await,
            GpuReadingSource::None => continue,
        };
        match result {
            Ok(reading) => {
                return Snapshot {
                    source,
                    reading: Some(reading),
                    failures,
                };
            }
            Err(e) => failures.push((source, e.to_string())),
        }
    }
    Snapshot::none(failures)
}

/// The `GPU` telemetry of a workflow from the readings before and after it, and the fallback
/// notes (`System.FallbackNotes`): one when a source other than the first one tried answered,
/// or when none did, naming the source and why the others did not.
pub fn around(before: &Snapshot, after: &Snapshot, pref: GpuSource) -> (GpuTelemetry, Vec<String>) {
    let mut notes = Vec::new();
    let first = chain(pref, None).first().copied();
    for (when, s) in [("before", before), ("after", after)] {
        if pref == GpuSource::None {
            break;
        }
        let why: Vec<String> = s
            .failures
            .iter()
            .map(|(src, e)| format!("{} {e}", source_name(*src)))
            .collect();
        let note = match (&s.reading, why.is_empty()) {
            (Some(_), true) if Some(s.source) == first => continue,
            (Some(_), _) => format!(
                "GPU reading {when} the workflow from {}; {}",
                source_name(s.source),
                why.join("; ")
            ),
            (None, _) => format!(
                "no GPU reading {when} the workflow ({}); GPU fields are null",
                if why.is_empty() {
                    "no source configured".to_owned()
                } else {
                    why.join("; ")
                }
            ),
        };
        // The same story before and after is told once.
        let key = note.replacen(when, "around", 1);
        if !notes.contains(&key) {
            notes.push(key);
        }
    }
    if pref == GpuSource::None {
        notes.push("GPU readings are off (gpu = \"none\"); GPU fields are null".to_owned());
    }
    let source = match (before.reading.is_some(), after.reading.is_some()) {
        (_, true) => after.source,
        (true, false) => before.source,
        (false, false) => GpuReadingSource::None,
    };
    if before.reading.is_some() && after.reading.is_some() && before.source != after.source {
        notes.push(format!(
            "GPU readings came from different sources (before: {}, after: {}); VramDeltaMB compares them anyway",
            source_name(before.source),
            source_name(after.source)
        ));
    }
    let name = after
        .reading
        .as_ref()
        .and_then(|r| r.name.clone())
        .or_else(|| before.reading.as_ref().and_then(|r| r.name.clone()));
    let telemetry = GpuTelemetry::new(
        source,
        name,
        before.reading.as_ref().map(|r| r.used_mb),
        after.reading.as_ref().map(|r| r.used_mb),
    );
    (telemetry, notes)
}

fn source_name(s: GpuReadingSource) -> &'static str {
    match s {
        GpuReadingSource::Nvml => "NVML",
        GpuReadingSource::SystemStats => "/system_stats",
        GpuReadingSource::NvidiaSmi => "nvidia-smi",
        GpuReadingSource::None => "none",
    }
}

fn mib(bytes: u64) -> i64 {
    i64::try_from(bytes / MIB).unwrap_or(i64::MAX)
}

/// NVML, loaded once per process (`libnvidia-ml.so.1` through nvml-wrapper): a machine
/// without the driver gets an error to note, not a failure.
async fn nvml() -> Result<Reading, SourceError> {
    static NVML: OnceLock<Result<nvml_wrapper::Nvml, nvml_wrapper::error::NvmlError>> =
        OnceLock::new();
    let read = || {
        let nvml = NVML
            .get_or_init(nvml_wrapper::Nvml::init)
            .as_ref()
            .map_err(|e| SourceError::Unavailable(format!("could not be loaded ({e})")))?;
        let device = nvml
            .device_by_index(0)
            .map_err(|e| SourceError::NoGpu(format!("device 0: {e}")))?;
        let mem = device
            .memory_info()
            .map_err(|e| SourceError::Unavailable(format!("memory info: {e}")))?;
        Ok(Reading {
            name: device.name().ok(),
            used_mb: mib(mem.used),
            total_mb: Some(mib(mem.total)),
        })
    };
    // NVML calls block (the first loads a shared library), so they stay off the runtime's
    // threads.
    tokio::task::spawn_blocking(read).await.unwrap_or_else(|e| {
        Err(SourceError::Unavailable(format!(
            "the NVML task failed: {e}"
        )))
    })
}

/// How long a server whose device 0 is the CPU is taken to stay so: a CPU ComfyUI gets no GPU
/// without a restart, and asking it again before and after every prompt costs a round trip
/// each.
const CPU_SERVER_MEMO: Duration = Duration::from_secs(60);

fn cpu_servers() -> &'static Mutex<HashMap<String, (Instant, String)>> {
    static MEMO: OnceLock<Mutex<HashMap<String, (Instant, String)>>> = OnceLock::new();
    MEMO.get_or_init(Default::default)
}

async fn system_stats(client: &reqwest::Client, url: &str) -> Result<Reading, SourceError> {
    let url = format!("{}/system_stats", url.trim_end_matches('/'));
    let known_cpu = cpu_servers()
        .lock()
        .ok()
        .and_then(|m| m.get(&url).cloned())
        .filter(|(at, _)| at.elapsed() < CPU_SERVER_MEMO);
    if let Some((_, why)) = known_cpu {
        return Err(SourceError::NoGpu(why));
    }
    let reading = system_stats_now(client, &url).await;
    if let Err(SourceError::NoGpu(why)) = &reading
        && let Ok(mut m) = cpu_servers().lock()
    {
        m.insert(url, (Instant::now(), why.clone()));
    }
    reading
}

async fn system_stats_now(client: &reqwest::Client, url: &str) -> Result<Reading, SourceError> {
    let resp = client
        .get(url)
        .timeout(SOURCE_TIMEOUT)
        .send()
        .await
        .map_err(|e| SourceError::Unavailable(format!("did not answer: {e}")))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(SourceError::Unavailable(format!("answered HTTP {status}")));
    }
    // `/system_stats` is a few hundred bytes; anything near the bound is not one.
    let body = super::read_body_within(resp, 1024 * 1024)
        .await
        .map_err(|e| SourceError::Unavailable(e.to_string()))?;
    parse_system_stats(&String::from_utf8_lossy(&body))
}

/// Reads `devices[0]` of ComfyUI's `/system_stats`: memory in use is `vram_total - vram_free`.
/// A CPU device is not a GPU (its "VRAM" is the machine's RAM), so it gives no reading.
pub fn parse_system_stats(body: &str) -> Result<Reading, SourceError> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| SourceError::Malformed(format!("not JSON: {e}")))?;
    let dev = v
        .get("devices")
        .and_then(Value::as_array)
        .ok_or_else(|| SourceError::Malformed("no `devices` list".to_owned()))?
        .first()
        .ok_or_else(|| SourceError::NoGpu("`devices` is empty".to_owned()))?;
    let kind = dev.get("type").and_then(Value::as_str).unwrap_or("");
    let raw_name = dev.get("name").and_then(Value::as_str).unwrap_or("");
    if kind == "cpu" || raw_name == "cpu" {
        return Err(SourceError::NoGpu("device 0 is the CPU".to_owned()));
    }
    let num = |k: &str| {
        dev.get(k)
            .and_then(Value::as_u64)
            .ok_or_else(|| SourceError::Malformed(format!("devices[0].{k} is not a byte count")))
    };
    let total = num("vram_total")?;
    let free = num("vram_free")?;
    if free > total {
        return Err(SourceError::Malformed(format!(
            "devices[0].vram_free ({free}) exceeds vram_total ({total})"
        )));
    }
    Ok(Reading {
        name: Some(clean_torch_device_name(raw_name)).filter(|n| !n.is_empty()),
        used_mb: mib(total - free),
        total_mb: Some(mib(total)),
    })
}

/// ComfyUI names a CUDA device `cuda:0 NVIDIA GeForce RTX 3090 : cudaMallocAsync`; the GPU's
/// own name (what NVML and `nvidia-smi` say) is the middle part.
pub fn clean_torch_device_name(raw: &str) -> String {
    let mut s = raw.trim();
    if let Some((head, rest)) = s.split_once(' ')
        && head.contains(':')
        && !head.contains(' ')
    {
        s = rest;
    }
    if let Some((name, _allocator)) = s.rsplit_once(" : ") {
        s = name;
    }
    s.trim().to_owned()
}

async fn nvidia_smi() -> Result<Reading, SourceError> {
    // Not installed stays not installed for the life of the process: no spawn per reading.
    static ABSENT: OnceLock<()> = OnceLock::new();
    if ABSENT.get().is_some() {
        return Err(SourceError::Unavailable("is not installed".to_owned()));
    }
    let mut cmd = tokio::process::Command::new("nvidia-smi");
    cmd.args([
        "--query-gpu=name,memory.used,memory.total",
        "--format=csv,noheader,nounits",
        "--id=0",
    ])
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    let out = match tokio::time::timeout(SOURCE_TIMEOUT, cmd.output()).await {
        Err(_) => {
            return Err(SourceError::Unavailable(format!(
                "did not answer within {} s",
                SOURCE_TIMEOUT.as_secs()
            )));
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            let _ = ABSENT.set(());
            return Err(SourceError::Unavailable("is not installed".to_owned()));
        }
        Ok(Err(e)) => return Err(SourceError::Unavailable(format!("could not run: {e}"))),
        Ok(Ok(out)) => out,
    };
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .chain(text.lines())
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(SourceError::Unavailable(format!(
            "exited with {}: {}",
            out.status,
            first.trim()
        )));
    }
    parse_nvidia_smi_csv(&text)
}

/// Parses the first line of `nvidia-smi --query-gpu=name,memory.used,memory.total
/// --format=csv,noheader,nounits`: `NVIDIA H100 80GB HBM3, 1234, 81559` (MiB).
pub fn parse_nvidia_smi_csv(text: &str) -> Result<Reading, SourceError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| SourceError::NoGpu("nvidia-smi listed no GPU".to_owned()))?;
    // The name may itself hold a comma; the two numbers are always the last two fields.
    let mut fields = line.rsplitn(3, ',').map(str::trim);
    let (total, used, name) = match (fields.next(), fields.next(), fields.next()) {
        (Some(t), Some(u), Some(n)) => (t, u, n),
        _ => {
            return Err(SourceError::Malformed(format!(
                "expected `name, memory.used, memory.total`, got {line:?}"
            )));
        }
    };
    let number = |what: &str, s: &str| {
        s.parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| SourceError::Malformed(format!("{what} is {s:?}, not a number of MiB")))
    };
    let used = number("memory.used", used)?;
    // `[N/A]` for the total is tolerable; the reading is memory in use.
    let total = number("memory.total", total).ok();
    if name.is_empty() {
        return Err(SourceError::Malformed(format!("no GPU name in {line:?}")));
    }
    Ok(Reading {
        name: Some(name.to_owned()),
        used_mb: used,
        total_mb: total,
    })
}

#[cfg(test)]
mod tests;
