//! Prometheus metrics in the text format, as a file for node_exporter's textfile collector
//! (`cinepipe run --metrics-file`, `cinepipe sentinel --metrics-file`). Counters must only
//! grow across runs, so each writer adds to a state kept beside the file
//! (`<file>.state.json`), under a lock (`<file>.lock`), and rewrites the file atomically:
//! the collector never reads half a file, and two runs writing at once lose no count.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::artifact_metadata::{ArtifactMetadata, AttemptOutcome};
use crate::fsutil::write_atomic;

const STATE_FORMAT: u32 = 1;
/// Bucket bounds (seconds) of the duration histograms: from a fast stage to a long render.
const BUCKETS: [f64; 12] = [
    0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];
/// How long a writer waits for another to finish with the file.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Every metric family: name, type, help. Written in this order.
const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "cinepipe_runs_total",
        "counter",
        "Runs finished, by spec, profile and outcome.",
    ),
    (
        "cinepipe_scenes_total",
        "counter",
        "Scenes of finished runs, by spec and whether frames were collected (frames=some|none).",
    ),
    (
        "cinepipe_stage_attempts_total",
        "counter",
        "Stage attempts, by spec, stage, outcome and failure class.",
    ),
    (
        "cinepipe_stage_duration_seconds",
        "histogram",
        "Duration of finished stage attempts, by spec and stage.",
    ),
    (
        "cinepipe_done_markers_total",
        "counter",
        "Scenes that waited for a done marker, by spec and whether it was seen (seen=true|false).",
    ),
    (
        "cinepipe_forced_copies_total",
        "counter",
        "Forced copies of frames after a done marker did not appear, by spec.",
    ),
    (
        "cinepipe_gpu_memory_used_bytes",
        "gauge",
        "GPU memory in use after the last scene of the spec's last run that had a reading.",
    ),
    (
        "cinepipe_last_run_timestamp_seconds",
        "gauge",
        "When the spec's last run ended, Unix time.",
    ),
    (
        "cinepipe_sentinel_passes_total",
        "counter",
        "Passes of the sentinel over ComfyUI's history.",
    ),
    (
        "cinepipe_sentinel_markers_total",
        "counter",
        "Done markers the sentinel wrote.",
    ),
    (
        "cinepipe_sentinel_prompts_without_frames_total",
        "counter",
        "Finished prompts the sentinel found without frames to mark (failed, or nothing saved).",
    ),
];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Histogram {
    /// Observations at or under each bound of [`BUCKETS`] (not cumulative).
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

/// What the file says, kept to add to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Store {
    format: u32,
    /// `name{labels}` → value.
    counters: BTreeMap<String, f64>,
    gauges: BTreeMap<String, f64>,
    histograms: BTreeMap<String, Histogram>,
}

/// Why the metrics file was not written.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not cinepipe's metrics state ({why}); move it away to start afresh")]
    BadState { path: PathBuf, why: String },
    #[error("{path} is locked by another writer for more than {} s", LOCK_WAIT.as_secs())]
    Locked { path: PathBuf },
}

/// `name{a="x",b="y"}` with the label values escaped as the text format asks.
fn series(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{name}{{{}}}", inner.join(","))
}

impl Store {
    pub fn add(&mut self, name: &str, labels: &[(&str, &str)], by: f64) {
        *self.counters.entry(series(name, labels)).or_default() += by;
    }

    pub fn set(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.gauges.insert(series(name, labels), value);
    }

    pub fn observe(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let h = self.histograms.entry(series(name, labels)).or_default();
        if h.buckets.len() != BUCKETS.len() {
            h.buckets = vec![0; BUCKETS.len()];
        }
        if let Some(i) = BUCKETS.iter().position(|b| value <= *b) {
            h.buckets[i] += 1;
        }
        h.count += 1;
        h.sum += value;
    }

    /// The text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, kind, help) in FAMILIES {
            let of =
                |k: &String| k == name || k.strip_prefix(name).is_some_and(|r| r.starts_with('{'));
            let mut lines = Vec::new();
            for (k, v) in self.counters.iter().chain(self.gauges.iter()) {
                if of(k) {
                    lines.push(format!("{k} {v}"));
                }
            }
            for (k, h) in self.histograms.iter().filter(|(k, _)| of(k)) {
                // `name{labels}` → the labels, to add `le` to.
                let labels = k.strip_prefix(name).unwrap_or_default();
                let inner = labels.trim_start_matches('{').trim_end_matches('}');
                let with_le = |le: &str| {
                    if inner.is_empty() {
                        format!("{name}_bucket{{le=\"{le}\"}}")
                    } else {
                        format!("{name}_bucket{{{inner},le=\"{le}\"}}")
                    }
                };
                let mut cumulative = 0;
                for (b, n) in BUCKETS.iter().zip(&h.buckets) {
                    cumulative += n;
                    lines.push(format!("{} {cumulative}", with_le(&b.to_string())));
                }
                lines.push(format!("{} {}", with_le("+Inf"), h.count));
                lines.push(format!("{name}_sum{labels} {}", h.sum));
                lines.push(format!("{name}_count{labels} {}", h.count));
            }
            if !lines.is_empty() {
                out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
                for l in lines {
                    out.push_str(&l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// The counts of one finished run.
pub fn record_run(store: &mut Store, spec: &str, m: &ArtifactMetadata) {
    let outcome = m.outcome.as_str();
    store.add(
        "cinepipe_runs_total",
        &[
            ("spec", spec),
            ("profile", &m.profile),
            ("outcome", outcome),
        ],
        1.0,
    );
    let mut attempts: Vec<_> = m.stage_attempt_summaries.iter().collect();
    let mut vram: Option<i64> = None;
    for scene in &m.scenes {
        let frames = if scene.frames.count == 0 {
            "none"
        } else {
            "some"
        };
        store.add(
            "cinepipe_scenes_total",
            &[("spec", spec), ("frames", frames)],
            1.0,
        );
        let t = &scene.telemetry;
        if t.done_marker_detected || t.done_marker_wait_seconds.is_some() {
            let seen = if t.done_marker_detected {
                "true"
            } else {
                "false"
            };
            store.add(
                "cinepipe_done_markers_total",
                &[("spec", spec), ("seen", seen)],
                1.0,
            );
        }
        if t.forced_copy_triggered {
            store.add("cinepipe_forced_copies_total", &[("spec", spec)], 1.0);
        }
        vram = t.gpu.vram_after_mb.or(vram);
        attempts.extend(scene.scene_attempt_summaries.iter());
    }
    for a in attempts {
        let outcome = serde_json::to_value(a.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let class = if a.outcome == AttemptOutcome::Failed {
            a.failure_class
                .and_then(|c| serde_json::to_value(c).ok())
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "unknown".into())
        } else {
            String::new()
        };
        store.add(
            "cinepipe_stage_attempts_total",
            &[
                ("spec", spec),
                ("stage", &a.stage),
                ("outcome", &outcome),
                ("class", &class),
            ],
            1.0,
        );
        if let Some(end) = &a.end {
            let s = end.0.duration_since(a.start.0).as_secs_f64().max(0.0);
            store.observe(
                "cinepipe_stage_duration_seconds",
                &[("spec", spec), ("stage", &a.stage)],
                s,
            );
        }
    }
    if let Some(mb) = vram {
        store.set(
            "cinepipe_gpu_memory_used_bytes",
            &[("spec", spec)],
            mb as f64 * 1024.0 * 1024.0,
        );
    }
    if let Some(end) = &m.ended_at {
        store.set(
            "cinepipe_last_run_timestamp_seconds",
            &[("spec", spec)],
            end.0.as_millisecond() as f64 / 1000.0,
        );
    }
}

fn side(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Adds to the metrics file at `path`: under its lock, the state read, `f` applied, the state
/// and the file written atomically.
pub fn update(path: &Path, f: impl FnOnce(&mut Store)) -> Result<(), MetricsError> {
    use std::os::fd::AsRawFd;
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| MetricsError::Io { path: p, source }
    };
    let lock_path = side(path, ".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    let started = Instant::now();
    loop {
        // SAFETY: flock on a descriptor we own; released when `lock` is closed.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            break;
        }
        if started.elapsed() > LOCK_WAIT {
            return Err(MetricsError::Locked { path: lock_path });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let state_path = side(path, ".state.json");
    let mut store = match std::fs::read(&state_path) {
        Ok(b) => {
            let s: Store = serde_json::from_slice(&b).map_err(|e| MetricsError::BadState {
                path: state_path.clone(),
                why: e.to_string(),
            })?;
            if s.format != STATE_FORMAT {
                return Err(MetricsError::BadState {
                    path: state_path,
                    why: format!("format {}", s.format),
                });
            }
            s
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Store {
            format: STATE_FORMAT,
            ..Store::default()
        },
        Err(e) => return Err(io(&state_path)(e)),
    };
    f(&mut store);
    let bytes = serde_json::to_vec(&store).map_err(|e| MetricsError::Io {
        path: state_path.clone(),
        source: std::io::Error::other(e),
    })?;
    write_atomic(&state_path, &bytes).map_err(io(&state_path))?;
    write_atomic(path, store.render().as_bytes()).map_err(io(path))?;
    drop(lock);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_across_writers_and_histograms_are_cumulative() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("cinepipe.prom");
        for _ in 0..2 {
            update(&path, |s| {
                s.add(
                    "cinepipe_runs_total",
                    &[("spec", "a \"b\""), ("outcome", "success")],
                    1.0,
                );
                s.observe(
                    "cinepipe_stage_duration_seconds",
                    &[("stage", "render")],
                    0.7,
                );
                s.observe(
                    "cinepipe_stage_duration_seconds",
                    &[("stage", "render")],
                    45.0,
                );
            })
            .expect("update");
        }
        let text = std::fs::read_to_string(&path).expect("file");
        assert!(
            text.contains("cinepipe_runs_total{spec=\"a \\\"b\\\"\",outcome=\"success\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE cinepipe_stage_duration_seconds histogram\n"));
        assert!(
            text.contains(
                "cinepipe_stage_duration_seconds_bucket{stage=\"render\",le=\"0.5\"} 0\n"
            )
        );
        assert!(
            text.contains("cinepipe_stage_duration_seconds_bucket{stage=\"render\",le=\"1\"} 2\n")
        );
        assert!(
            text.contains("cinepipe_stage_duration_seconds_bucket{stage=\"render\",le=\"60\"} 4\n")
        );
        assert!(
            text.contains(
                "cinepipe_stage_duration_seconds_bucket{stage=\"render\",le=\"+Inf\"} 4\n"
            )
        );
        assert!(text.contains("cinepipe_stage_duration_seconds_sum{stage=\"render\"} 91.4\n"));
        assert!(text.contains("cinepipe_stage_duration_seconds_count{stage=\"render\"} 4\n"));
        // A broken state is refused, and the file is left as it was.
        std::fs::write(side(&path, ".state.json"), "{").expect("write");
        assert!(matches!(
            update(&path, |s| s.add("cinepipe_runs_total", &[], 1.0)),
            Err(MetricsError::BadState { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).expect("file"), text);
    }
}
