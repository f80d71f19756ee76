//! Tests of the test support: the builder writes the specs it says it does, and the scripted
//! stage does what its steps say.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{ContextExt, SCENE_PIPELINE, Scripted, SpecBuilder, Step, context, story};
use crate::exec::Stage;
use crate::spec::model::{FailureClass, Stage as SpecStage, StageKind};

fn parsed(b: &SpecBuilder) -> Value {
    toml::from_str(&b.text()).expect("the builder writes TOML")
}

#[test]
fn the_scene_pipeline_is_a_valid_chain_that_fans_out_after_the_story() {
    let checked = SpecBuilder::chain("t", &SCENE_PIPELINE).check();
    let stages = &checked.spec.stages;
    let names: Vec<&str> = stages.keys().map(String::as_str).collect();
    assert_eq!(names, SCENE_PIPELINE);
    let kinds: Vec<&str> = stages.values().map(|s| s.kind().as_str()).collect();
    assert_eq!(
        kinds,
        [
            "llm",
            "patch-workflow",
            "queue",
            "await-marker",
            "collect-frames",
            "quality",
            "validate"
        ]
    );
    let v = parsed(&SpecBuilder::chain("t", &SCENE_PIPELINE));
    assert_eq!(v["stages"]["story"].get("needs"), None);
    assert_eq!(v["stages"]["patch"]["needs"], json!(["story"]));
    assert_eq!(v["stages"]["patch"]["for_each"], json!("story.scenes"));
    assert_eq!(v["stages"]["render"]["needs"], json!(["patch"]));
    assert_eq!(v["stages"]["render"].get("for_each"), None);
    assert_eq!(v["stages"]["validate"]["needs"], json!(["quality"]));
    assert_eq!(
        v["services"],
        json!({
            "llm": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
            "comfy": {"kind": "comfyui", "urls": ["http://127.0.0.1:9"]},
        })
    );
    assert_eq!(
        v["run"]["base_dir"],
        json!(super::project_root().display().to_string())
    );
}

#[test]
fn a_chain_brings_only_the_services_its_stages_use() {
    let v = parsed(&SpecBuilder::chain("t", &["render", "marker"]));
    assert_eq!(v["services"].as_object().map(|s| s.len()), Some(1));
    assert!(v["services"].get("comfy").is_some());
    let v = parsed(&SpecBuilder::chain("t", &["story", "validate"]));
    assert!(v["services"].get("comfy").is_none());
    assert_eq!(v["stages"]["validate"]["needs"], json!(["story"]));
    // validate checks the whole run: it gathers even right after the story.
    assert_eq!(v["stages"]["validate"].get("for_each"), None);
    let v = parsed(&SpecBuilder::chain("t", &["story", "frames", "quality"]));
    assert_eq!(v["stages"]["frames"]["for_each"], json!("story.scenes"));
    assert_eq!(v["stages"]["quality"].get("for_each"), None);
    let v = parsed(&SpecBuilder::chain("t", &["story"]).without("services.llm"));
    assert!(v.get("services").is_none(), "{v}");
}

#[test]
fn set_toml_and_remove_change_one_table_and_keep_the_rest() {
    let b = SpecBuilder::chain("t", &["story", "patch", "render"])
        .set("run", "seed", 7)
        .comfy_urls(&["http://a", "http://b"])
        .llm_url("http://l/v1")
        .set(
            "stages.render",
            "retry",
            json!({"budget": 3, "on": ["timeout"]}),
        )
        .toml(
            "stages.render",
            "max_wait_s = 1.5\npost_execution_timeout_s = 5",
        )
        .toml("stages.render", "")
        .scenes(6)
        .remove("run", "base_dir")
        .set("stages.extra", "kind", "validate");
    let v = parsed(&b);
    assert_eq!(v["run"], json!({"name": "t", "seed": 7}));
    assert_eq!(
        v["services"]["comfy"]["urls"],
        json!(["http://a", "http://b"])
    );
    assert_eq!(v["services"]["llm"]["base_url"], json!("http://l/v1"));
    assert_eq!(
        v["stages"]["render"],
        json!({
            "kind": "queue", "service": "comfy", "needs": ["patch"],
            "retry": {"budget": 3, "on": ["timeout"]},
            "max_wait_s": 1.5, "post_execution_timeout_s": 5,
        })
    );
    assert_eq!(
        v["stages"]["story"]["vars"],
        json!({"scenes": 6, "tone": "calm", "premise": ""})
    );
    assert_eq!(
        v["stages"]["patch"]["set"],
        json!({"save.filename_prefix": "{{prefix}}"})
    );
    assert_eq!(v["stages"]["extra"], json!({"kind": "validate"}));
    // The tables keep the order they were first written in.
    let text = b.text();
    let at = |h: &str| text.find(h).unwrap_or_else(|| panic!("{h} in\n{text}"));
    assert!(at("[run]") < at("[services.llm]"));
    assert!(at("[services.comfy]") < at("[stages.story]"));
    assert!(at("[stages.render]") < at("[stages.extra]"));
}

#[test]
fn the_small_model_story_is_an_llm_stage_with_its_settings() {
    let b = SpecBuilder::chain("t", &["story"]).small_model_story();
    let settings = b.stage_settings("story");
    assert_eq!(settings.get("kind"), None);
    assert_eq!(settings["system_prompt"], "prompts/story/v1/system.hbs");
    assert_eq!(settings["seed"], 7);
    let stage: crate::spec::model::LlmStage =
        serde_json::from_value(settings).expect("an llm stage's settings");
    assert_eq!(stage.timeout_s, 900.0);
    assert!(matches!(
        b.check().spec.stages.get("story"),
        Some(SpecStage::Llm(_))
    ));
}

#[test]
#[should_panic(expected = "the test spec is invalid")]
fn an_invalid_spec_panics_with_its_diagnostics() {
    let _ = SpecBuilder::chain("t", &["validate"])
        .set("stages.validate", "needs", json!(["nope"]))
        .check();
}

#[test]
fn a_written_spec_loads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = SpecBuilder::chain("t", &["story", "validate"])
        .output_dir(&dir.path().join("runs"))
        .write(dir.path(), "t.toml");
    let checked = crate::spec::load(&path, None).expect("valid");
    assert_eq!(checked.spec.run.name, "t");
    assert_eq!(checked.spec.stages.len(), 2);
}

fn ctx_for(stage: &str) -> crate::exec::StageContext {
    let spec = Arc::new(SpecBuilder::chain("t", &["story", "patch"]).check());
    context(&spec, std::path::Path::new("run"), stage)
}

#[tokio::test(start_paused = true)]
async fn steps_take_their_time_then_answer_and_every_attempt_is_logged() {
    let script = Scripted::new()
        .on("story", |_| {
            Step::ok(story(2)).after(Duration::from_secs(3))
        })
        .on("patch", |ctx| {
            if ctx.attempt == 1 {
                Step::fail(FailureClass::Timeout)
            } else {
                Step::ok(json!(ctx.item))
            }
        });
    let t0 = Instant::now();
    let out = script.run(&ctx_for("story")).await.expect("a story");
    assert_eq!(t0.elapsed(), Duration::from_secs(3));
    assert_eq!(out["scenes"][1]["id"], "scene-2");
    let e = script
        .run(&ctx_for("patch"))
        .await
        .expect_err("attempt 1 fails");
    assert_eq!(e.class, FailureClass::Timeout);
    assert_eq!(e.message, "scripted Timeout");
    let ctx = ctx_for("patch")
        .with_attempt(2)
        .with_item(json!({"id": "s"}));
    assert_eq!(script.run(&ctx).await, Ok(json!({"id": "s"})));
    // No script: the fallback names the instance.
    let ctx = ctx_for("other").with_input("story", json!(1));
    assert_eq!(
        script.run(&ctx).await,
        Ok(json!({"stage": "other", "item": 0}))
    );
    assert_eq!(script.runs_of("patch[0]"), 2);
    let log = script.log();
    let ids: Vec<(&str, u32)> = log.iter().map(|a| (a.id.as_str(), a.attempt)).collect();
    assert_eq!(
        ids,
        [
            ("story[0]", 1),
            ("patch[0]", 1),
            ("patch[0]", 2),
            ("other[0]", 1)
        ]
    );
    assert_eq!(
        log[0].end.duration_since(log[0].start),
        Duration::from_secs(3)
    );
    assert_eq!(log[3].ctx.input("story"), Some(&json!(1)));
    assert!(log.iter().all(|a| !a.cancelled));
}

#[tokio::test(start_paused = true)]
async fn a_cancel_ends_a_heeding_step_and_not_an_ignoring_one() {
    let script = Scripted::new()
        .on("story", |_| Step::ok(json!(1)).until_cancelled())
        .otherwise(|_| {
            Step::ok(json!(2))
                .after(Duration::from_secs(10))
                .ignoring_cancel()
        });
    let ctx = ctx_for("story");
    let cancel = ctx.cancel.clone();
    let t0 = Instant::now();
    let (r, ()) = tokio::join!(script.run(&ctx), async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        cancel.cancel();
    });
    assert_eq!(t0.elapsed(), Duration::from_secs(2));
    assert_eq!(r.map_err(|e| e.class), Err(FailureClass::Interrupted));
    assert!(script.log()[0].cancelled);

    let ctx = ctx_for("patch");
    ctx.cancel.cancel();
    let t0 = Instant::now();
    assert_eq!(script.run(&ctx).await, Ok(json!(2)));
    assert_eq!(t0.elapsed(), Duration::from_secs(10));
    assert!(!script.log()[1].cancelled);
}

#[tokio::test]
async fn registries_put_the_script_in_place_of_the_kinds_asked_for() {
    let script = Scripted::new();
    let spec = SpecBuilder::chain("t", &SCENE_PIPELINE).check();
    let all = script.registry();
    let some = script.over_builtin(&[StageKind::Llm]);
    let alone = script.alone(&[StageKind::Queue]);
    assert!(all.unbuilt(&spec).is_empty());
    assert!(some.unbuilt(&spec).is_empty());
    let unbuilt: Vec<&str> = alone
        .unbuilt(&spec)
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(unbuilt.len(), StageKind::ALL.len() - 1, "{unbuilt:?}");
    assert!(!unbuilt.contains(&"queue"));

    // The scripted kinds run the script (and log); the others are the built-in stages.
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = Arc::new(spec);
    let run = |registry: &crate::exec::Registry, kind, stage: &str| {
        let stage_impl = registry.get(kind).expect("registered").clone();
        let ctx = context(&spec, dir.path(), stage);
        async move { stage_impl.run(&ctx).await }
    };
    run(&all, StageKind::Validate, "validate")
        .await
        .expect("scripted");
    run(&some, StageKind::Llm, "story").await.expect("scripted");
    run(&alone, StageKind::Queue, "render")
        .await
        .expect("scripted");
    assert_eq!(script.log().len(), 3);
    // The built-in validate, handed a stage of another kind, says so at once.
    let builtin = run(&some, StageKind::Validate, "story")
        .await
        .expect_err("not a validate stage");
    assert!(
        builtin.message.contains("validate stage was handed"),
        "{builtin}"
    );
    assert_eq!(script.log().len(), 3);

    // Unlogged, the script still answers, and keeps nothing.
    let quiet = Scripted::new().unlogged();
    let r = run(&quiet.registry(), StageKind::Llm, "story").await;
    assert_eq!(r, Ok(json!({"stage": "story", "item": 0})));
    assert!(quiet.log().is_empty());
}
