//! Coherence by an LLM judge: the story's scenes rendered into a versioned rubric
//! (`judge_rubric`), sent to the `judge_service` with the structured-output path the `llm`
//! stage uses (`response_format` with a `{score, reason}` schema), and the grade read as
//! G-Eval does: the probability-weighted mean of the grades 1–5 at the score's place in the
//! answer, from `top_logprobs`, where the server gives them; otherwise the mean of
//! `judge_samples` sampled grades. An unparsable answer is asked again within the stage's retry
//! budget, then the score is null with a note: never guessed.

use indexmap::IndexMap;
use serde_json::{Value, json};

use crate::clients::openai::{ChatRequest, Message, OpenAiClient, TokenChoices, extract_json};
use crate::exec::StageContext;
use crate::spec::model::{QualityStage, Service};
use crate::stages::output::CoherenceRecord;

/// Alternatives asked for at each token: enough that the grades a small model considers are
/// among them.
const TOP_LOGPROBS: u8 = 20;
/// Completion tokens of one judgement: `{score, reason}` with a one-sentence reason.
const JUDGE_MAX_TOKENS: u32 = 160;
/// Temperature of the sampled grades (the logprob path asks greedily, at 0).
const SAMPLE_TEMPERATURE: f64 = 0.7;

/// The `{score, reason}` schema the judge must answer in, score first (llama.cpp's grammar
/// keeps the order, so the score's token comes before the reason).
fn answer_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "score": { "type": "integer", "minimum": 1, "maximum": 5 },
            "reason": { "type": "string" },
        },
        "required": ["score", "reason"],
        "additionalProperties": false,
    })
}

/// The story as the rubric's `story`: one numbered line per scene.
pub fn story_text(scenes: &[(String, String)]) -> String {
    scenes
        .iter()
        .enumerate()
        .map(|(i, (_, prompt))| format!("{}. {}", i + 1, prompt.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A grade and reason parsed from the judge's answer text; `None` when it is not
/// `{score: 1..=5, reason}`.
pub fn parse_grade(content: &str) -> Option<(u8, String)> {
    let v = extract_json(content)?;
    let score = v.get("score")?.as_u64()?;
    let grade = u8::try_from(score).ok().filter(|g| (1..=5).contains(g))?;
    let reason = v.get("reason")?.as_str()?.to_owned();
    Some((grade, reason))
}

/// The grade token's place in `tokens` (the first lone digit after `"score"`) and the
/// probability of each grade 1–5 there, renormalised over the grades among its top
/// alternatives; `None` when there is no such place or no grade among the alternatives.
pub fn grade_distribution(tokens: &[TokenChoices]) -> Option<[f64; 5]> {
    let mut before = String::new();
    let place = tokens.iter().find(|t| {
        let hit = before.contains("\"score\"") && grade_of(&t.token).is_some();
        before.push_str(&t.token);
        hit
    })?;
    let mut p = [0.0; 5];
    for (token, logprob) in &place.top {
        if let Some(g) = grade_of(token) {
            p[usize::from(g - 1)] += logprob.exp();
        }
    }
    let total: f64 = p.iter().sum();
    (total > 0.0).then(|| p.map(|x| x / total))
}

/// The grade a token stands for: one digit 1–5, with spaces or a comma around it.
fn grade_of(token: &str) -> Option<u8> {
    let t = token.trim().trim_end_matches(',').trim();
    match t.as_bytes() {
        [d @ b'1'..=b'5'] => Some(d - b'0'),
        _ => None,
    }
}

/// The mean grade of a distribution over 1–5.
pub fn weighted_mean(p: &[f64; 5]) -> f64 {
    p.iter()
        .enumerate()
        .map(|(i, x)| (i as f64 + 1.0) * x)
        .sum()
}

/// What the judge gave: the score (null when no answer could be parsed) and its record.
pub(super) struct Judgement {
    pub(super) score: Option<f64>,
    pub(super) record: CoherenceRecord,
    pub(super) notes: Vec<String>,
}

/// Grades the story's coherence with the `judge_service`.
pub(super) async fn judge(
    ctx: &StageContext,
    cfg: &QualityStage,
    scenes: &[(String, String)],
) -> Judgement {
    let mut notes = Vec::new();
    let mut record = CoherenceRecord {
        model: None,
        rubric: cfg.judge_rubric.clone(),
        rubric_version: None,
        method: None,
        distribution: None,
        grades: Vec::new(),
        reason: None,
        requests: 0,
    };
    let failed = |record: CoherenceRecord, mut notes: Vec<String>, why: String| {
        notes.push(format!("coherence not measured: {why}"));
        Judgement {
            score: None,
            record,
            notes,
        }
    };
    let Some(name) = &cfg.judge_service else {
        return failed(record, notes, "no `judge_service`".to_owned());
    };
    let Some(Service::Openai(service)) = ctx.spec.spec.services.get(name) else {
        return failed(
            record,
            notes,
            format!("`{name}` is not an `openai` service"),
        );
    };
    record.model = Some(service.model.clone());
    let path = ctx.spec.base_dir.join(&cfg.judge_rubric);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            return failed(
                record,
                notes,
                format!("cannot read {}: {e}", path.display()),
            );
        }
    };
    record.rubric_version = crate::spec::templates::prompt_meta(&text)
        .ok()
        .flatten()
        .and_then(|m| m.version);
    let mut vars = IndexMap::new();
    vars.insert("story".to_owned(), Value::String(story_text(scenes)));
    let mut hb = handlebars::Handlebars::new();
    // A rubric is plain text: HTML escaping would turn quotes into `&quot;`.
    hb.register_escape_fn(handlebars::no_escape);
    hb.set_strict_mode(true);
    let prompt = match hb.render_template(&text, &vars) {
        Ok(p) => p.trim().to_owned(),
        Err(e) => return failed(record, notes, format!("cannot render the rubric: {e}")),
    };
    let client = match OpenAiClient::new(service) {
        Ok(c) => c,
        Err(e) => return failed(record, notes, e.to_string()),
    };
    let request = |temperature: f64, seed: i64| ChatRequest {
        model: service.model.clone(),
        messages: vec![Message {
            role: "user".into(),
            content: prompt.clone(),
        }],
        max_tokens: JUDGE_MAX_TOKENS,
        temperature,
        seed: Some(seed),
        response_format: Some(json!({
            "type": "json_schema",
            "json_schema": { "name": "judgement", "strict": true, "schema": answer_schema() },
        })),
    };
    // Every request may be unparsable: each one past the grades needed spends the budget.
    let samples = cfg.judge_samples.max(1) as usize;
    let budget = cfg.retry.budget as usize;
    let mut spent = 0usize;
    let mut sampling = false;
    loop {
        let needed = if sampling { samples } else { 1 };
        if record.grades.len() >= needed
            || record.requests as usize >= samples + budget
            || spent > budget
        {
            break;
        }
        let seed = i64::from(record.requests) + 1;
        let temperature = if sampling { SAMPLE_TEMPERATURE } else { 0.0 };
        record.requests += 1;
        let req = request(temperature, seed);
        let asked = tokio::select! {
            r = client.chat_with_logprobs(&req, TOP_LOGPROBS) => r,
            () = ctx.cancel.cancelled() => return failed(record, notes, "cancelled".to_owned()),
        };
        let (answer, tokens) = match asked {
            Ok(a) => a,
            Err(e) => {
                spent += 1;
                notes.push(format!("judge request {} failed: {e}", record.requests));
                continue;
            }
        };
        let Some((grade, reason)) = parse_grade(&answer.content) else {
            spent += 1;
            notes.push(format!(
                "judge answer {} is not {{score: 1-5, reason}}: {:.120}",
                record.requests, answer.content
            ));
            continue;
        };
        record.grades.push(grade);
        record.reason.get_or_insert(reason);
        if !sampling {
            if let Some(p) = tokens.as_deref().and_then(grade_distribution) {
                record.method = Some("logprobs".to_owned());
                record.distribution = Some(p.to_vec());
                let score = weighted_mean(&p);
                return Judgement {
                    score: Some(score),
                    record,
                    notes,
                };
            }
            // No `top_logprobs` (LM Studio, some Ollama versions): sample instead.
            sampling = true;
        }
    }
    if record.grades.is_empty() {
        let why = format!(
            "no answer of the judge parsed in {} requests (retry budget {budget})",
            record.requests
        );
        return failed(record, notes, why);
    }
    record.method = Some("samples".to_owned());
    let mut counts = [0.0; 5];
    for g in &record.grades {
        counts[usize::from(g - 1)] += 1.0;
    }
    let n = record.grades.len() as f64;
    let p = counts.map(|c| c / n);
    if record.grades.len() < samples {
        notes.push(format!(
            "coherence from {} of {samples} sampled grades (the rest did not parse)",
            record.grades.len()
        ));
    }
    record.distribution = Some(p.to_vec());
    Judgement {
        score: Some(weighted_mean(&p)),
        record,
        notes,
    }
}
