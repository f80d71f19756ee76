//! The command line's definitions (clap): every command and flag, defined once; `--help`, the
//! man pages and the shell completions are generated from them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// cinepipe: turn a TOML run spec into a story-to-video run.
#[derive(Debug, Parser)]
#[command(name = "cinepipe", version, about, max_term_width = 100)]
pub struct Cli {
    /// When to color diagnostics.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check specs completely (every rule, every profile); folders are searched for `*.toml`.
    Validate {
        /// Spec files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print only problems, not the specs that pass.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Print the resolved values of a spec (with where each came from) and its stage order.
    Plan {
        /// The spec file.
        spec: PathBuf,
        /// Profile to apply (`standard`, `fast`, or one the spec defines).
        #[arg(long, short)]
        profile: Option<String>,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
    },
    /// Draw a spec's stage graph.
    Graph {
        /// The spec file.
        spec: PathBuf,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Run a spec into a new run folder, or finish an interrupted or failed run with `--resume`.
    Run(RunArgs),
    /// Run a suite of specs repeatedly (each spec under each profile, N times): verdicts per
    /// spec and profile, the seeds' KPIs, gates that decide the exit code, JUnit for CI.
    Sweep(SweepArgs),
    /// Check that this machine can run a spec: each service reachable, its version, the model,
    /// the done-marker node, GPU, queue, output folder and free space, clock skew.
    Doctor {
        /// The spec whose services to check [default: the demo's local ports, 18080 and 18188].
        spec: Option<PathBuf>,
        /// Profile to apply to the spec.
        #[arg(long, short)]
        profile: Option<String>,
        /// Output format (`json` follows schemas/doctor.schema.json).
        #[arg(long, short, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        /// Free space under which a folder is a warning, in GB.
        #[arg(long, value_name = "GB", default_value_t = crate::doctor::DEFAULT_MIN_FREE_GB)]
        min_free_gb: f64,
    },
    /// Write done-markers for workflows without the marker node: follow one ComfyUI and mark
    /// each finished prompt's frames once they are on disk. Runs until SIGTERM or Ctrl-C.
    Sentinel(SentinelArgs),
    /// Compare variants of one spec (profiles, or a bench file's profile overlays): runs
    /// interleaved, `results.json` with intervals and a rank test, `ANALYSIS.md` with plots,
    /// and a regression gate against a baseline.
    Bench(BenchArgs),
    /// List the runs in an output folder: id, start, outcome, sessions, instances, scenes.
    Runs {
        /// The output folder (`run.output_dir` of the specs).
        #[arg(default_value = "runs")]
        dir: PathBuf,
        /// Output format: a table, or one JSON document (`schemas/runs.schema.json`).
        #[arg(long, short, value_enum, default_value_t = InspectFormat::Text)]
        format: InspectFormat,
    },
    /// Summarise one run: outcome, stage instances with their attempts, failures, its files.
    Show {
        /// The run folder (`runs/<run-id>`).
        run_dir: PathBuf,
        /// Output format: text, or one JSON document (`schemas/show.schema.json`).
        #[arg(long, short, value_enum, default_value_t = InspectFormat::Text)]
        format: InspectFormat,
    },
    /// Write one self-contained HTML report of a run folder or a sweep folder: outcome,
    /// timeline, duration histograms, a contact sheet of every scene's frames, the story.
    Report(ReportArgs),
    /// Write a run as Chrome/Perfetto trace-event JSON: a track per scene, a span per attempt,
    /// instant events for retries, requeues and fallbacks.
    Trace {
        /// The run folder (`runs/<run-id>`).
        run_dir: PathBuf,
        /// The JSON file to write [default: `trace.json` in the run folder].
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Rate a scene of a run (1–5 stars and a comment, into its `artifact-metadata.json`), or
    /// summarise the ratings of a folder of runs by genre, prompt template version and model.
    Feedback(FeedbackArgs),
    /// Serve a local web view of a folder of runs: the runs list with the ratings summary, each
    /// run's report page with a rating form per scene, the run's files.
    Serve {
        /// The output folder (`run.output_dir` of the specs).
        #[arg(default_value = "runs")]
        runs_dir: PathBuf,
        /// The address to listen on (port 0: any free port).
        #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        /// Allow an address other than loopback (the view has no authentication: anyone who
        /// reaches the port reads the runs and can rate them).
        #[arg(long)]
        allow_remote: bool,
    },
    /// Check a run folder against the telemetry contract: `artifact-metadata.json` against its
    /// schema, `run-summary.txt` against the metadata.
    Verify {
        /// The run folder (`runs/<run-id>`).
        run_dir: PathBuf,
    },
    /// Install cinepipe's ComfyUI node package (the done-marker writer) into a ComfyUI's
    /// `custom_nodes/`.
    InstallNode {
        /// The ComfyUI folder (the one that holds `main.py` and `custom_nodes/`).
        #[arg(long, value_name = "DIR")]
        comfyui_dir: PathBuf,
    },
    /// Write the spec reference (Markdown) generated from cinepipe's types.
    Docs {
        /// File to write.
        #[arg(long, default_value = "docs/spec.md")]
        out: PathBuf,
        /// Write nothing; exit 1 if the file differs from what would be written.
        #[arg(long)]
        check: bool,
    },
    /// Write the JSON Schemas generated from cinepipe's types.
    Schema {
        /// Folder to write them into.
        #[arg(long, default_value = "schemas")]
        out_dir: PathBuf,
        /// Write nothing; exit 1 if the files in the folder differ from what would be written.
        #[arg(long)]
        check: bool,
    },
    /// Write the shell completions (bash, zsh, fish) generated from cinepipe's flags.
    Completions {
        /// Folder to write them into.
        #[arg(long, default_value = "completions", conflicts_with = "shell")]
        out_dir: PathBuf,
        /// Print the script of this one shell on stdout instead.
        #[arg(long, value_enum)]
        shell: Option<Shell>,
        /// Write nothing; exit 1 if the files in the folder differ from what would be written.
        #[arg(long, conflicts_with = "shell")]
        check: bool,
    },
    /// Write the man pages (`cinepipe.1`, one per command) generated from cinepipe's flags.
    Man {
        /// Folder to write them into.
        #[arg(long, default_value = "docs/man")]
        out_dir: PathBuf,
        /// Write nothing; exit 1 if the files in the folder differ from what would be written.
        #[arg(long)]
        check: bool,
    },
}

/// The flags of `cinepipe run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The spec file (optional with `--resume`: the run folder records its spec).
    #[arg(required_unless_present = "resume")]
    pub spec: Option<PathBuf>,
    /// Profile to apply (`standard`, `fast`, or one the spec defines); with `--resume`, the
    /// run's own profile by default.
    #[arg(long, short)]
    pub profile: Option<String>,
    /// Stage attempts running at the same time, at most [default: the number of CPUs, at
    /// least 4].
    #[arg(long, short, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// After a failure, let the work that does not depend on it finish (default: stop
    /// scheduling at the first failure and let running stages end).
    #[arg(long, short)]
    pub keep_going: bool,
    /// Finish the run in this folder without redoing the stage instances it completed.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Do not reuse cached LLM answers; ask again.
    #[arg(long)]
    pub no_cache: bool,
    /// Print no progress (no live display, no lines, no logs), only the result.
    #[arg(long, short)]
    pub quiet: bool,
    /// How progress and logs are written on stderr: `text` (a live display on a terminal,
    /// plain lines otherwise) or `json` (one JSON object per event, as in `events.jsonl`, and
    /// per log line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Add this run's counts to a Prometheus metrics file (text format, for node_exporter's
    /// textfile collector); its state is kept beside it (`FILE.state.json`).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

/// The flags of `cinepipe report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run folder (`runs/<run-id>`) or a sweep folder (with `sweep.json`).
    pub dir: PathBuf,
    /// The HTML file to write [default: `report.html` in the folder].
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Frames of each scene on the contact sheet, spread from the first to the last; 0 = all.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub frames_per_scene: usize,
    /// The longer side of a thumbnail, in pixels.
    #[arg(long, value_name = "PX", default_value_t = 80, value_parser = clap::value_parser!(u32).range(8..=1024))]
    pub thumb_size: u32,
}

/// The flags of `cinepipe feedback`.
#[derive(Debug, Args)]
pub struct FeedbackArgs {
    /// The run folder (`runs/<run-id>`) whose scene is rated.
    #[arg(required_unless_present = "summary", conflicts_with = "summary")]
    pub run_dir: Option<PathBuf>,
    /// The scene rated (its id, `scene-1`); without it the rating is of the whole run.
    #[arg(long, value_name = "ID")]
    pub scene: Option<String>,
    /// Stars, 1 to 5.
    #[arg(long, short, value_name = "N", required_unless_present = "summary",
        value_parser = clap::value_parser!(u8).range(1..=5))]
    pub rating: Option<u8>,
    /// What the rater says about it.
    #[arg(long, short, value_name = "TEXT")]
    pub comment: Option<String>,
    /// Who rates.
    #[arg(long, value_name = "NAME")]
    pub author: Option<String>,
    /// Print the ratings of every run under this folder, by genre, prompt template version and
    /// model, instead of rating.
    #[arg(long, value_name = "RUNS_DIR", conflicts_with_all = ["scene", "rating", "comment", "author"])]
    pub summary: Option<PathBuf>,
}

/// The flags of `cinepipe sweep`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    pub action: Option<SweepAction>,
    /// A suite folder (specs and an optional `suite.toml`), or spec files.
    #[arg(required_unless_present = "resume")]
    pub inputs: Vec<PathBuf>,
    /// Runs of each (spec, profile) [default: the suite's `repeat`, else 1].
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: Option<u32>,
    /// Stress: start rounds of every (spec, profile) until this much time has passed (`90s`,
    /// `10m`, `2h 30m`), in place of a repeat count; runs under way finish.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "repeat")]
    pub stress_duration: Option<std::time::Duration>,
    /// Profile to sweep; repeat the flag for several [default: the suite's `profiles`, else
    /// `standard`].
    #[arg(long = "profile", short = 'p', value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// Run only this shard of the work list: `hash:K/N` (by a hash of each run's key: a run
    /// stays in its shard when specs are added) or `count:K/N` (round-robin); K may be
    /// `index-env` to read the 0-based `JOB_COMPLETION_INDEX`.
    #[arg(long, value_name = "hash:K/N|count:K/N")]
    pub partition: Option<crate::sweep::Partition>,
    /// Runs at the same time.
    #[arg(long, short, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: u32,
    /// In each run, let the work that does not depend on a failure finish.
    #[arg(long, short)]
    pub keep_going: bool,
    /// The sweep folder to make [default: `sweeps/<UTC time>-<suite>`].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Finish the sweep in this folder: finished runs are kept, interrupted ones resumed, the
    /// rest run.
    #[arg(long, value_name = "SWEEP_DIR", conflicts_with_all = ["inputs", "repeat", "stress_duration", "profiles", "partition", "out"])]
    pub resume: Option<PathBuf>,
    /// Also write the sweep as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print only the result.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A positive duration in jiff's friendly format (`90s`, `10m`, `1h 30m`) or ISO 8601 (`PT10M`).
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("`{s}` is not a duration like 90s, 10m or 1h 30m ({e})"))?;
    if d.is_negative() || d.is_zero() {
        return Err(format!("`{s}`: the duration must be more than zero"));
    }
    std::time::Duration::try_from(d).map_err(|e| format!("`{s}`: {e}"))
}

/// The flags of `cinepipe sentinel`.
#[derive(Debug, Args)]
pub struct SentinelArgs {
    /// The ComfyUI server to follow.
    #[arg(long, value_name = "URL")]
    pub comfyui: String,
    /// Its output folder (ComfyUI's `--output-dir`), where frames and markers are.
    #[arg(long, value_name = "DIR")]
    pub output_dir: PathBuf,
    /// The state file (prompts handled) [default: `.cinepipe-sentinel.json` in the output
    /// folder].
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Seconds between passes over `/history` when the WebSocket does not wake it sooner.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, value_parser = positive_seconds)]
    pub poll_interval: f64,
    /// Seconds a prompt's files must keep their sizes before its marker is written.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.5, value_parser = non_negative_seconds)]
    pub stable_for: f64,
    /// Prompt ids the state remembers (oldest dropped first).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: u32,
    /// One pass, then exit (for a timer or cron instead of a service).
    #[arg(long)]
    pub once: bool,
    /// Keep Prometheus counters of passes and markers in this file (text format, for
    /// node_exporter's textfile collector).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 3600.0 => Ok(v),
        _ => Err(format!("`{s}`: seconds, more than 0 and at most 3600")),
    }
}

fn non_negative_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}`: seconds, from 0 to 3600")),
    }
}

/// The flags of `cinepipe bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The spec to bench (with `--compare`, instead of the bench file's `spec`).
    #[arg(required_unless_present_any = ["resume", "compare"])]
    pub spec: Option<PathBuf>,
    /// The variants: profiles, comma-separated (the first is the reference).
    #[arg(long, value_delimiter = ',', value_name = "A,B", required_unless_present_any = ["resume", "compare"])]
    pub profiles: Vec<String>,
    /// A bench file (`bench.toml`): the spec, and variants as profile overlays.
    #[arg(long, value_name = "FILE", conflicts_with = "profiles")]
    pub compare: Option<PathBuf>,
    /// Measured runs of each variant [default: the bench file's `runs`, else 5].
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: Option<u32>,
    /// Warm-up runs of each variant, run first and recorded apart [default: the bench file's
    /// `warmup`, else 1].
    #[arg(long)]
    pub warmup: Option<u32>,
    /// Ask the LLM again in every run instead of using its cached answer.
    #[arg(long)]
    pub no_cache: bool,
    /// The seed of each round's order and of the bootstrap [default: random, recorded].
    #[arg(long)]
    pub seed: Option<u64>,
    /// In each run, let the work that does not depend on a failure finish.
    #[arg(long, short)]
    pub keep_going: bool,
    /// The bench folder to make [default: `benches/<UTC time>-<spec>`].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Finish the bench in this folder: finished runs are kept, an interrupted one resumed,
    /// the rest run.
    #[arg(long, value_name = "BENCH_DIR", conflicts_with_all = ["spec", "profiles", "compare", "runs", "warmup", "seed", "out", "no_cache"])]
    pub resume: Option<PathBuf>,
    /// An earlier `results.json`: exit 4 when a variant's median wall time regresses past
    /// `--max-regression` with its interval above no change.
    #[arg(long, value_name = "RESULTS_JSON")]
    pub baseline: Option<PathBuf>,
    /// The largest slowdown against the baseline that passes, in percent (`10%` or `10`).
    #[arg(long, value_name = "PERCENT", default_value = "10%", value_parser = parse_percent)]
    pub max_regression: f64,
    /// Also write the comparison as JUnit XML to this file (a test case per variant).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print only the verdict.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `10%` or `10` → 0.10.
fn parse_percent(s: &str) -> Result<f64, String> {
    let n: f64 = s
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a percentage (write e.g. `10%`)"))?;
    if !(0.0..=1000.0).contains(&n) {
        return Err(format!("{s} is out of range (0% to 1000%)"));
    }
    Ok(n / 100.0)
}

/// What `cinepipe sweep` does besides sweeping.
#[derive(Debug, clap::Subcommand)]
pub enum SweepAction {
    /// Merge the folders of a sweep's shards (`--partition`) into one sweep folder, with the
    /// `sweep.json` (and JUnit) an unsharded sweep of the same runs has.
    Merge {
        /// The shard folders.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// The merged sweep folder to make.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Also write the merged sweep as JUnit XML to this file.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
}

/// How `runs` and `show` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InspectFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

/// The shells `cinepipe completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}
