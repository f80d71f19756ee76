//! Benchmark: from the done marker's rename to `await-marker` returning (issue #6 target: p95
//! under 5 ms).
//!
//! A writer thread does what `WriteDoneMarker` does (write `<prefix>.done.tmp`, fsync,
//! `rename`) while the stage waits; the clock starts just before the `rename` call and stops
//! when the stage's future returns. Two measurements:
//!
//! - `wait_for_file`: the wait alone (inotify event → wake → look);
//! - `AwaitMarker::run`: the whole stage attempt, which also reads and checks the marker and
//!   writes its `attempt-<n>.json` record (fsync'd).
//!
//! The polling fallback is set to 30 s, so only a file-system event can be fast. The wait
//! starts 20 ms before the rename, as in a run where the stage waits for a render. Run with
//! `cargo bench --bench await_marker` (`ROUNDS=N` to change the 200 rounds).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cinepipe::exec::{InstanceId, Stage, StageContext};
use cinepipe::stages::await_marker::{AwaitMarker, WaitOutcome, wait_for_file};
use cinepipe::testkit::{ContextExt, SpecBuilder, context};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn write_marker_later(dir: &Path, name: &str) -> std::thread::JoinHandle<Instant> {
    let dir = dir.to_path_buf();
    let name = name.to_owned();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        let tmp = dir.join(format!("{name}.tmp"));
        let body = br#"{"Timestamp": "2025-01-02T03:04:05Z", "FrameCount": 0, "Files": []}"#;
        let f = std::fs::File::create(&tmp).expect("create");
        std::io::Write::write_all(&mut &f, body).expect("write");
        f.sync_all().expect("fsync");
        let t0 = Instant::now();
        std::fs::rename(&tmp, dir.join(&name)).expect("rename");
        t0
    })
}

fn report(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{what:<22} rounds {:>4}  p50 {:>7.3} ms  p95 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms",
        ms.len(),
        q(0.5),
        q(0.95),
        q(0.99),
        ms[ms.len() - 1]
    );
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("output");
    let run_dir = tmp.path().join("run");
    std::fs::create_dir_all(&out).expect("mkdir");

    // The wait alone.
    let mut lat = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let folder = out.join(format!("wait/{i}/a1"));
        std::fs::create_dir_all(&folder).expect("mkdir");
        let marker = folder.join("frame.done");
        let writer = write_marker_later(&folder, "frame.done");
        let (r, t1) = rt.block_on(async {
            let r = wait_for_file(
                &out,
                &marker,
                Duration::from_secs(10),
                Duration::from_secs(30),
                &CancellationToken::new(),
            )
            .await;
            (r, Instant::now())
        });
        let t0 = writer.join().expect("writer");
        assert!(matches!(r, WaitOutcome::Found { .. }), "{r:?}");
        lat.push(t1.saturating_duration_since(t0).as_secs_f64() * 1e3);
    }
    report("wait_for_file", lat);

    // The whole stage attempt.
    let spec = SpecBuilder::chain("bench", &["render", "marker"])
        .set("services.comfy", "output_dir", out.display().to_string())
        .toml("stages.marker", "timeout_s = 10\npoll_interval_s = 30")
        .check();
    let spec = Arc::new(spec);
    let mut lat = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let prefix = format!("stage/{i}/a1/frame");
        let folder = out.join(format!("stage/{i}/a1"));
        std::fs::create_dir_all(&folder).expect("mkdir");
        let ctx = StageContext {
            run_id: "bench".into(),
            instance_dir: format!("stages/marker/{i}").into(),
            instance: InstanceId::new("marker", Some(i as u32)),
            ..context(&spec, &run_dir, "marker")
                .with_input("render", json!({ "prefix": prefix, "service": "comfy" }))
        };
        let writer = write_marker_later(&folder, "frame.done");
        let (r, t1) = rt.block_on(async {
            let r = AwaitMarker.run(&ctx).await;
            (r, Instant::now())
        });
        let t0 = writer.join().expect("writer");
        let v = r.expect("the stage finds the marker");
        assert_eq!(v["DetectedBy"], "event", "{v}");
        lat.push(t1.saturating_duration_since(t0).as_secs_f64() * 1e3);
    }
    report("AwaitMarker::run", lat);
}
