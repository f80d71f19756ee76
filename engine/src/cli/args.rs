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
    #[arg(long, value_name = "SWEEP_DIR", conflicts_with_all = ["inputs", "repeat", "profiles", "partition", "out"])]
    pub resume: Option<PathBuf>,
    /// Also write the sweep as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print only the result.
    #[arg(long, short)]
    pub quiet: bool,
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
