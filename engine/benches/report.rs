//! Benchmark: `cinepipe report` of a 100-scene run. A run folder is generated (100 scenes of 25
//! frames of 512×288, a journal with every stage instance, a tenth of the renders retried, and
//! the contract's metadata), then the report is written three times and the median time and
//! the file's size are printed.
//!
//! Target (issue #17): ≤ 1 s and ≤ 10 MB. Run with `cargo bench --bench report`; set
//! `REPORT_BENCH_DIR` to keep the generated run folder there.

use std::path::Path;
use std::time::Instant;

use cinepipe::artifact_metadata::{ArtifactMetadata, METADATA_FILE};
use cinepipe::report::{ThumbOptions, write_report};
use cinepipe::rundir::event::{
    AttemptOutcome, Event, EventKind, InstanceId, JOURNAL_VERSION, RunOutcome,
};
use cinepipe::rundir::journal::Journal;
use cinepipe::spec::model::FailureClass;
use serde_json::json;

const SCENES: usize = 100;
const FRAMES: usize = 25;
const STAGES: [&str; 5] = ["patch", "render", "marker", "frames", "quality"];

fn frame(path: &Path, scene: usize, i: usize) {
    let (w, h) = (512u32, 288u32);
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    let (sx, sy) = ((i * 16) as u32, (40 + scene % 100) as u32);
    let mut noise = (scene * 7919 + i * 104_729) as u32;
    for y in 0..h {
        for x in 0..w {
            noise = noise.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let grain = (noise >> 29) as u8;
            let inside = (sx..sx + 64).contains(&x) && (sy..sy + 64).contains(&y);
            let px = if inside {
                [240, 192, 32]
            } else {
                [(x / 4) as u8, (y / 2) as u8, (scene * 2) as u8]
            };
            data.extend(px.map(|c| c.saturating_add(grain)));
        }
    }
    let file = std::fs::File::create(path).expect("create");
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.write_header()
        .expect("header")
        .write_image_data(&data)
        .expect("data");
}

fn ts(s: f64) -> String {
    jiff::Timestamp::from_millisecond(1_780_000_000_000 + (s * 1000.0) as i64)
        .expect("time")
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn generate(dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut meta: ArtifactMetadata = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/runs/valid/artifact-metadata.json"))
            .expect("fixture"),
    )
    .expect("typed");
    let template = meta.scenes[0].clone();
    meta.scenes.clear();
    for s in 0..SCENES {
        let id = format!("scene-{}", s + 1);
        let folder = format!("stages/frames/{s}/frames");
        std::fs::create_dir_all(dir.join(&folder)).expect("mkdir");
        let mut scene = template.clone();
        scene.scene_id = id.clone();
        scene.prompt = format!(
            "shot {}: a derelict station over a red planet, slow pan",
            s + 1
        );
        scene.frames.directory = Some(folder.clone());
        scene.frames.paths = (0..FRAMES)
            .map(|i| {
                let rel = format!("{folder}/{id}_{:05}_.png", i + 1);
                frame(&dir.join(&rel), s, i);
                rel
            })
            .collect();
        scene.frames.count = FRAMES as u32;
        meta.scenes.push(scene);
    }
    meta.quality_metrics.checks.clear();
    std::fs::write(
        dir.join(METADATA_FILE),
        serde_json::to_vec_pretty(&meta).expect("json"),
    )
    .expect("metadata");
    std::fs::write(
        dir.join("run.json"),
        json!({"run_id": "bench", "spec": "bench.toml", "profile": "standard",
            "created": ts(0.0), "version": "0"})
        .to_string(),
    )
    .expect("manifest");
    let mut j = Journal::create(&dir.join("events.jsonl")).expect("journal");
    let mut record = |at: f64, kind: EventKind| j.record(&Event { ts: ts(at), kind });
    record(
        0.0,
        EventKind::RunStarted {
            journal_version: JOURNAL_VERSION,
            run_id: "bench".into(),
            session: 1,
            spec: "bench.toml".into(),
            profile: "standard".into(),
            jobs: 4,
            keep_going: false,
            no_cache: false,
            version: "0".into(),
            unbuilt_kinds: vec![],
        },
    );
    let story = InstanceId::new("story", None);
    record(
        0.0,
        EventKind::AttemptStarted {
            instance: story.clone(),
            attempt: 1,
        },
    );
    record(
        8.0,
        EventKind::AttemptFinished {
            instance: story.clone(),
            attempt: 1,
            outcome: AttemptOutcome::Succeeded,
            duration_s: 8.0,
            class: None,
            error: None,
            retry_in_s: None,
        },
    );
    record(
        8.0,
        EventKind::Succeeded {
            instance: story,
            attempts: 1,
            flaky: false,
            output: None,
        },
    );
    record(
        8.0,
        EventKind::FannedOut {
            list: "story.scenes".into(),
            count: SCENES as u32,
        },
    );
    let mut end: f64 = 8.0;
    for s in 0..SCENES {
        let mut t = 8.0 + (s / 4) as f64 * 30.0;
        for stage in STAGES {
            let id = InstanceId::new(stage, Some(s as u32));
            let tries = if stage == "render" && s % 10 == 3 {
                2
            } else {
                1
            };
            for a in 1..=tries {
                let d = if stage == "render" {
                    20.0 + (s % 7) as f64
                } else {
                    0.5 + (s % 3) as f64 * 0.2
                };
                record(
                    t,
                    EventKind::AttemptStarted {
                        instance: id.clone(),
                        attempt: a,
                    },
                );
                let failed = a < tries;
                record(
                    t + d,
                    EventKind::AttemptFinished {
                        instance: id.clone(),
                        attempt: a,
                        outcome: if failed {
                            AttemptOutcome::Failed
                        } else {
                            AttemptOutcome::Succeeded
                        },
                        duration_s: d,
                        class: failed.then_some(FailureClass::ExecutionError),
                        error: failed.then(|| "node 3 raised".to_owned()),
                        retry_in_s: failed.then_some(2.0),
                    },
                );
                t += d + if failed { 2.0 } else { 0.0 };
            }
            record(
                t,
                EventKind::Succeeded {
                    instance: id,
                    attempts: tries,
                    flaky: tries > 1,
                    output: None,
                },
            );
        }
        end = end.max(t);
    }
    record(
        end,
        EventKind::RunFinished {
            outcome: RunOutcome::Succeeded,
            succeeded: (SCENES * STAGES.len() + 1) as u32,
            failed: 0,
            skipped: 0,
            flaky: (SCENES / 10) as u32,
            duration_s: end,
        },
    );
    j.sync();
}

fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir =
        std::env::var_os("REPORT_BENCH_DIR").map_or_else(|| tmp.path().join("run"), Into::into);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let t = Instant::now();
    generate(&dir);
    eprintln!(
        "generated {SCENES} scenes × {FRAMES} frames in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let out = tmp.path().join("report.html");
    let mut times = Vec::new();
    let mut written = None;
    for _ in 0..3 {
        let t = Instant::now();
        written = Some(write_report(&dir, &out, ThumbOptions::default()).expect("report"));
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let w = written.expect("written");
    println!(
        "report of {SCENES} scenes: median {:.0} ms (runs {:?} ms), {:.2} MB, {} thumbnails",
        times[1] * 1000.0,
        times
            .iter()
            .map(|t| (t * 1000.0).round() as u64)
            .collect::<Vec<_>>(),
        w.bytes as f64 / 1_000_000.0,
        w.thumbnails
    );
}
