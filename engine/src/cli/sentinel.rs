//! `cinepipe sentinel`: runs the sentinel in the foreground, a line on stderr per marker, until
//! SIGTERM or Ctrl-C (then it saves its state and exits 0).

use std::time::Duration;

use super::args::SentinelArgs;
use crate::exec::{self, Interrupt};
use crate::exit::ExitCode;
use crate::sentinel::{self, SentinelError, SentinelOptions};

pub(crate) fn sentinel(args: SentinelArgs) -> ExitCode {
    let opts = SentinelOptions {
        state: args
            .state
            .unwrap_or_else(|| args.output_dir.join(".cinepipe-sentinel.json")),
        comfyui: args.comfyui,
        output_dir: args.output_dir,
        poll: Duration::from_secs_f64(args.poll_interval),
        stable_for: Duration::from_secs_f64(args.stable_for),
        keep: args.keep as usize,
        once: args.once,
        metrics: args.metrics_file,
    };
    if !opts.output_dir.is_dir() {
        tracing::error!(
            "error: the output folder {} is not there (ComfyUI's --output-dir)",
            opts.output_dir.display()
        );
        return ExitCode::Usage;
    }
    let rt = match super::output::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let interrupt = Interrupt::new();
    let log = |line: &str| eprintln!("{line}");
    eprintln!(
        "sentinel: following {} (output {}, state {})",
        opts.comfyui,
        opts.output_dir.display(),
        opts.state.display()
    );
    let result = rt.block_on(async {
        if let Err(e) = exec::signals::listen(interrupt.clone()) {
            tracing::warn!("warning: cannot listen for signals: {e}");
        }
        sentinel::run(&opts, interrupt.token(), &log).await
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(t) => {
            eprintln!(
                "sentinel: stopped after {} passes; {} markers written, {} prompts without frames",
                t.passes, t.markers, t.without_files
            );
            ExitCode::Success
        }
        Err(e) => {
            tracing::error!("error: {e}");
            match e {
                SentinelError::State { .. } => ExitCode::Io,
                SentinelError::BadState { .. } | SentinelError::Client(_) => ExitCode::Usage,
            }
        }
    }
}
