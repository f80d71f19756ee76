//! `cinepipe doctor`: is this machine ready to run a spec? For each service of the spec (or the
//! default local ports): reachable, its version, the model present, the done-marker node
//! deployed with this cinepipe's marker contract, GPU readable (and from where), ComfyUI's
//! queue depth, the output folder writable with free space, and clock skew from the server's
//! `Date` header; then the run folder's free space. One [`Check`] per line, each with a fix
//! hint when it is not ok.

mod checks;
mod folders;

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Serialize;

use crate::spec::CheckedSpec;
use crate::spec::model::Service;

/// The version of `doctor --format json`'s document.
pub const REPORT_FORMAT: u32 = 1;
/// The marker contract this cinepipe reads (`ContractVersion` in a `.done` file); the node
/// states it in its description as `(marker contract N)`.
pub const MARKER_CONTRACT: u32 = 1;
/// Free space under which a folder is a warning, by default.
pub const DEFAULT_MIN_FREE_GB: f64 = 5.0;
/// Clock skew over which a server is a warning: telemetry compares times across machines.
pub const MAX_SKEW_S: f64 = 2.0;
/// Prompts waiting on a ComfyUI server over which it is a warning (a run's scenes would wait
/// behind them).
pub const BUSY_QUEUE: u64 = 10;

/// What `doctor` looks at.
#[derive(Debug, Clone)]
pub struct DoctorRequest {
    /// A checked spec, or none for the default local ports.
    pub spec: Option<CheckedSpec>,
    pub min_free_gb: f64,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    /// Not checked, because a check it depends on failed (the service is down).
    Skip,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

/// One check.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Check {
    /// The spec's service name (`comfy`), or `run folder`.
    pub subject: String,
    /// The URL or folder checked.
    pub target: String,
    /// What was checked: `reachable`, `version`, `model`, `done-marker node`, `gpu`, `queue`,
    /// `output folder`, `free space`, `clock`.
    pub check: String,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// How to fix it, when it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Counts of each status.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct Counts {
    pub ok: u32,
    pub warn: u32,
    pub fail: u32,
    pub skip: u32,
}

/// `doctor --format json`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DoctorReport {
    pub format: u32,
    /// cinepipe's version.
    pub version: String,
    /// The spec checked, or null for the default local ports.
    pub spec: Option<String>,
    pub checks: Vec<Check>,
    pub counts: Counts,
}

impl DoctorReport {
    /// Whether any check failed (the exit code is 1 then).
    pub fn failed(&self) -> bool {
        self.counts.fail > 0
    }
}

/// The JSON Schema of `doctor --format json`.
pub fn doctor_schema() -> serde_json::Value {
    crate::json_schema::draft07::<DoctorReport>()
}

/// A service to check.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Llm {
        name: String,
        base_url: String,
        model: Option<String>,
        api_key_env: Option<String>,
    },
    Comfy {
        name: String,
        url: String,
        output_dir: Option<PathBuf>,
    },
}

/// The services of `spec` (every URL of a pool), or the default local ports.
fn targets(spec: Option<&CheckedSpec>) -> (Vec<Target>, PathBuf) {
    let Some(c) = spec else {
        return (
            vec![
                Target::Llm {
                    name: "llm".into(),
                    base_url: "http://127.0.0.1:18080/v1".into(),
                    model: None,
                    api_key_env: None,
                },
                Target::Comfy {
                    name: "comfy".into(),
                    url: "http://127.0.0.1:18188".into(),
                    output_dir: None,
                },
            ],
            PathBuf::from("runs"),
        );
    };
    let mut out = Vec::new();
    for (name, service) in &c.spec.services {
        match service {
            Service::Openai(s) => out.push(Target::Llm {
                name: name.clone(),
                base_url: s.base_url.clone(),
                model: Some(s.model.clone()),
                api_key_env: s.api_key_env.clone(),
            }),
            Service::Comfyui(s) => {
                for url in &s.urls {
                    out.push(Target::Comfy {
                        name: name.clone(),
                        url: url.clone(),
                        output_dir: s.output_dir.as_deref().map(|d| c.resolve_path(d)),
                    });
                }
            }
        }
    }
    (out, c.resolve_path(&c.spec.run.output_dir))
}

/// Runs every check (each bounded in time; the services are checked one after another).
pub async fn doctor(req: &DoctorRequest) -> DoctorReport {
    let (targets, run_folder) = targets(req.spec.as_ref());
    let mut checks = Vec::new();
    let client = crate::clients::http().ok();
    for t in &targets {
        match (t, &client) {
            (_, None) => checks.push(Check {
                subject: "cinepipe".into(),
                target: String::new(),
                check: "http client".into(),
                status: Status::Fail,
                detail: "cannot make an HTTP client".into(),
                hint: Some("check the system's TLS certificates".into()),
            }),
            (Target::Llm { .. }, Some(c)) => checks.extend(checks::llm(c, t).await),
            (Target::Comfy { .. }, Some(c)) => {
                checks.extend(checks::comfy(c, t, req.min_free_gb).await)
            }
        }
    }
    checks.extend(folders::folder(
        "run folder",
        &run_folder,
        req.min_free_gb,
        false,
    ));
    let mut counts = Counts::default();
    for c in &checks {
        match c.status {
            Status::Ok => counts.ok += 1,
            Status::Warn => counts.warn += 1,
            Status::Fail => counts.fail += 1,
            Status::Skip => counts.skip += 1,
        }
    }
    DoctorReport {
        format: REPORT_FORMAT,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        spec: req
            .spec
            .as_ref()
            .map(|c| c.source.path.display().to_string()),
        checks,
        counts,
    }
}
