//! The journal the executor writes: instance ids that parse back, and every line of a run
//! with most kinds of event valid against the generated schema.

use super::*;

#[test]
fn instance_ids_in_events_parse_back() {
    let id: InstanceId = "render[2]".parse().expect("id");
    assert_eq!(
        RunDir::output_file(&id),
        Path::new("stages/render/2/output.json")
    );
    assert_eq!(
        RunDir::output_file(&"story".parse().expect("id")),
        Path::new("stages/story/output.json")
    );
}

#[tokio::test(start_paused = true)]
async fn every_journal_line_matches_the_generated_schema() {
    // A run with retries, a requeue, a failure and skips: most kinds of event.
    let script = base_script()
        .on("render", |ctx| {
            let r = if ctx.instance.item == Some(0) && ctx.attempt == 1 {
                fail(FailureClass::Timeout)
            } else {
                Ok(json!(1))
            };
            timed(Duration::ZERO, r)
        })
        .on("frames", |ctx| {
            let r = match ctx.instance.item {
                Some(1) if ctx.attempt == 1 => fail(FailureClass::ShortFrames),
                Some(2) => fail(FailureClass::NodeError),
                _ => Ok(json!(1)),
            };
            timed(Duration::ZERO, r)
        });
    let ran = run_pipeline(
        &script,
        "{ budget = 1, delay_s = 1 }",
        "",
        opts(2, true),
        Interrupt::new(),
    )
    .await;
    let schema = crate::rundir::event::run_events_schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let text = std::fs::read_to_string(ran.report.dir.join("events.jsonl")).expect("journal");
    let mut kinds = std::collections::BTreeSet::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{line}: {errors:?}");
        kinds.insert(v["event"].as_str().unwrap_or("").to_owned());
    }
    let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
    assert_eq!(
        kinds,
        [
            "attempt-finished",
            "attempt-started",
            "failed",
            "fanned-out",
            "instance-started",
            "requeued",
            "run-finished",
            "run-started",
            "skipped",
            "succeeded"
        ]
    );
}
