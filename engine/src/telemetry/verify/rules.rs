//! The rules of the contract that a schema cannot say (derived values, consistent flags,
//! unique ids).

use serde_json::Value;

use super::{Taint, Violation};

pub(super) fn check_rules(doc: &Value, taint: &Taint<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    let scenes = doc
        .get("Scenes")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (i, scene) in scenes.iter().enumerate() {
        let base = format!("/Scenes/{i}");
        let id_ptr = format!("{base}/SceneId");
        if let Some(id) = scene.get("SceneId").and_then(Value::as_str)
            && !taint.hits(&id_ptr)
        {
            match seen.iter().find(|(s, _)| *s == id) {
                Some((_, first)) => out.push(Violation::at(
                    id_ptr,
                    format!("duplicate scene id `{id}` (also /Scenes/{first}/SceneId)"),
                )),
                None => seen.push((id, i)),
            }
        }
        let t = format!("{base}/Telemetry");
        let get = |p: &str| -> Option<&Value> {
            let full = format!("{t}{p}");
            if taint.hits(&full) {
                None
            } else {
                doc.pointer(&full)
            }
        };
        // The delta is derived: a tool that trusts it must get the same number it would compute.
        if let (Some(before), Some(after), Some(delta)) = (
            get("/GPU/VramBeforeMB"),
            get("/GPU/VramAfterMB"),
            get("/GPU/VramDeltaMB"),
        ) {
            let at = format!("{t}/GPU/VramDeltaMB");
            match (before.as_i64(), after.as_i64(), delta.as_i64()) {
                (Some(b), Some(a), Some(d)) => {
                    if let Some(want) = a.checked_sub(b)
                        && want != d
                    {
                        out.push(Violation::at(
                            at,
                            format!("must be VramAfterMB - VramBeforeMB = {want}, found {d}"),
                        ));
                    }
                }
                (Some(_), Some(_), None) => out.push(Violation::at(
                    at,
                    "must be VramAfterMB - VramBeforeMB when both are known, found null",
                )),
                (b, a, Some(d)) if b.is_none() || a.is_none() => out.push(Violation::at(
                    at,
                    format!("must be null when VramBeforeMB or VramAfterMB is null, found {d}"),
                )),
                _ => {}
            }
        }
        if get("/HistoryExitReason").and_then(Value::as_str) == Some("success")
            && get("/ExecutionSuccessDetected") == Some(&Value::Bool(false))
        {
            out.push(Violation::at(
                format!("{t}/ExecutionSuccessDetected"),
                "must be true when HistoryExitReason is success",
            ));
        }
        if get("/ForcedCopyTriggered") == Some(&Value::Bool(true))
            && get("/DoneMarkerDetected") == Some(&Value::Bool(true))
        {
            out.push(Violation::at(
                format!("{t}/ForcedCopyTriggered"),
                "cannot be true when DoneMarkerDetected is true (a forced copy replaces a marker that never came)",
            ));
        }
        if let (Some(n), Some(limit)) = (
            get("/HistoryAttempts").and_then(Value::as_u64),
            get("/HistoryAttemptLimit").and_then(Value::as_u64),
        ) && limit > 0
            && n > limit
        {
            out.push(Violation::at(
                format!("{t}/HistoryAttempts"),
                format!("{n} polls exceed HistoryAttemptLimit {limit}"),
            ));
        }
    }
    check_scores(doc, scenes, taint, &mut out);
    out
}

/// The weighted scores are derived from `Checks`: the run's over all of them, a scene's over
/// those with its `SceneId` (Σ `Weight`·`Passed` / Σ `Weight`; null with no weight at all).
fn check_scores(doc: &Value, scenes: &[Value], taint: &Taint<'_>, out: &mut Vec<Violation>) {
    if taint.hits("/QualityMetrics/Checks") {
        return;
    }
    let Some(checks) = doc
        .pointer("/QualityMetrics/Checks")
        .and_then(Value::as_array)
    else {
        return;
    };
    let score = |scene: Option<&str>| -> Option<f64> {
        let (mut passed, mut total) = (0.0, 0.0);
        for c in checks {
            let id = c.get("SceneId").and_then(Value::as_str);
            if scene.is_some() && id != scene {
                continue;
            }
            let w = c.get("Weight").and_then(Value::as_f64).unwrap_or(0.0);
            total += w;
            if c.get("Passed") == Some(&Value::Bool(true)) {
                passed += w;
            }
        }
        (total > 0.0).then(|| passed / total)
    };
    let mut expect = |ptr: String, want: Option<f64>| {
        if taint.hits(&ptr) {
            return;
        }
        let Some(found) = doc.pointer(&ptr) else {
            return;
        };
        let ok = match (want, found.as_f64()) {
            (Some(w), Some(f)) => (w - f).abs() <= 1e-9,
            (None, None) => found.is_null(),
            _ => false,
        };
        if !ok {
            let want = want.map_or("null".to_owned(), |w| w.to_string());
            out.push(Violation::at(
                ptr,
                format!("must be the weighted share of its checks passed, {want}, found {found}"),
            ));
        }
    };
    expect("/QualityMetrics/Score".to_owned(), score(None));
    for (i, scene) in scenes.iter().enumerate() {
        if let Some(id) = scene.get("SceneId").and_then(Value::as_str) {
            expect(format!("/Scenes/{i}/QualityMetrics/Score"), score(Some(id)));
        }
    }
}
