//! [`context`]: the [`StageContext`] of one attempt of one scene's instance, for a test or bench
//! that drives a stage directly instead of through the executor.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::exec::{InstanceId, StageContext};
use crate::spec::CheckedSpec;

/// Attempt 1 of `stage[0]` in the run folder `run_dir` (its instance folder
/// `stages/<stage>/0`), run id `test`, with no item, no inputs and a fresh cancel token. A
/// test changes what it is about with struct update syntax or the `with_*` methods.
pub fn context(spec: &Arc<CheckedSpec>, run_dir: &Path, stage: &str) -> StageContext {
    StageContext {
        run_id: "test".into(),
        run_dir: run_dir.to_path_buf(),
        instance_dir: PathBuf::from("stages").join(stage).join("0"),
        instance: InstanceId::new(stage, Some(0)),
        spec: spec.clone(),
        attempt: 1,
        item: None,
        inputs: Vec::new(),
        requeues_left: None,
        no_cache: false,
        cancel: CancellationToken::new(),
    }
}

/// Builder-style changes to a [`StageContext`] from [`context`].
pub trait ContextExt {
    /// The attempt number.
    fn with_attempt(self, attempt: u32) -> StageContext;
    /// The scene this instance runs for.
    fn with_item(self, item: Value) -> StageContext;
    /// Adds the output of the needed stage `stage`.
    fn with_input(self, stage: &str, output: Value) -> StageContext;
}

impl ContextExt for StageContext {
    fn with_attempt(mut self, attempt: u32) -> StageContext {
        self.attempt = attempt;
        self
    }

    fn with_item(mut self, item: Value) -> StageContext {
        self.item = Some(item);
        self
    }

    fn with_input(mut self, stage: &str, output: Value) -> StageContext {
        self.inputs.push((stage.to_owned(), Arc::new(output)));
        self
    }
}
