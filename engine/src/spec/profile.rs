//! Profiles: resolving `inherits`, laying a profile over the spec, and remembering which values
//! it set so that `cinepipe plan` can say where every value came from.

use std::collections::{HashMap, HashSet};

use std::sync::Arc;

use serde_json::{Map, Value};

use super::diagnostic::{Code, SpecDiagnostic, hint};
use super::model::{StageKind, builtin_profiles};
use super::source::{SpanIndex, SpecSource, escape_segment};
use super::structure::{Target, structure};

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "source", content = "name")]
pub enum Origin {
    /// cinepipe's default (the seeds' defaults).
    Default,
    /// Written in the spec.
    Spec,
    /// Set by the named profile.
    Profile(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::Spec => f.write_str("spec"),
            Origin::Profile(p) => write!(f, "profile:{p}"),
        }
    }
}

/// A spec with a profile laid over it.
#[derive(Debug, Clone)]
pub struct Overlaid {
    pub profile: String,
    pub doc: Value,
    pub index: SpanIndex,
    /// Pointers set by a profile (covering descendants): the profile's name, and whether it
    /// set them through `kinds.KIND` rather than `stages.NAME`.
    pub set_by: HashMap<String, (String, bool), foldhash::fast::RandomState>,
}

impl Overlaid {
    /// Where the value at `pointer` came from, given the spec as written.
    /// The profile that set `pointer` or one of its ancestors, if any.
    pub fn setter(&self, pointer: &str) -> Option<&(String, bool)> {
        let mut p = pointer;
        loop {
            if let Some(s) = self.set_by.get(p) {
                return Some(s);
            }
            match p.rfind('/') {
                Some(i) if i > 0 => p = &p[..i],
                _ => return None,
            }
        }
    }

    pub fn origin(&self, base: &Value, pointer: &str) -> Origin {
        let mut p = pointer;
        loop {
            if let Some((name, _)) = self.set_by.get(p) {
                return Origin::Profile(name.clone());
            }
            match p.rfind('/') {
                Some(i) if i > 0 => p = &p[..i],
                _ => break,
            }
        }
        if super::source::lookup(base, pointer).is_some() {
            Origin::Spec
        } else {
            Origin::Default
        }
    }
}

/// Every profile the spec can use: the built-in ones, replaced by the spec's own of that name.
/// Returns (name, definition, pointer of its table in the spec if it is the spec's).
pub fn all_profiles(doc: &Value) -> Vec<(String, Value, Option<String>)> {
    let mut out: Vec<(String, Value, Option<String>)> = builtin_profiles()
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v, None))
        .collect();
    if let Some(Value::Object(spec)) = doc.get("profiles") {
        for (name, def) in spec {
            let ptr = format!("/profiles/{}", escape_segment(name));
            if let Some(slot) = out.iter_mut().find(|(n, _, _)| n == name) {
                *slot = (name.clone(), def.clone(), Some(ptr));
            } else {
                out.push((name.clone(), def.clone(), Some(ptr)));
            }
        }
    }
    out
}

/// Whether profile `name` sets nothing and inherits nothing (so overlaying it is the identity).
pub fn is_noop(doc: &Value, name: &str) -> bool {
    all_profiles(doc)
        .into_iter()
        .find(|(n, _, _)| n == name)
        .is_some_and(|(_, def, _)| {
            ["inherits", "run", "services", "kinds", "stages"]
                .iter()
                .all(|k| def.get(k).is_none())
        })
}

pub fn profile_names(doc: &Value) -> Vec<String> {
    all_profiles(doc).into_iter().map(|(n, _, _)| n).collect()
}

/// Lays profile `name` (and what it inherits) over `base`. Problems with the profile are pushed
/// to `out`; the overlay goes on past them so that every problem is seen at once.
pub fn overlay(
    source: &SpecSource,
    base: &Value,
    index: &Arc<SpanIndex>,
    name: &str,
    out: &mut Vec<SpecDiagnostic>,
) -> Overlaid {
    let profiles = all_profiles(base);
    let chain = chain(source, index, &profiles, name, out);
    let mut o = Overlaid {
        profile: name.to_owned(),
        doc: base.clone(),
        index: SpanIndex::layered(index.clone()),
        set_by: HashMap::default(),
    };
    for i in chain {
        let (pname, def, ptr) = &profiles[i];
        apply(source, index, &mut o, pname, def, ptr.as_deref(), out);
    }
    o
}

/// The profiles to apply, ancestors first.
fn chain(
    source: &SpecSource,
    index: &SpanIndex,
    profiles: &[(String, Value, Option<String>)],
    name: &str,
    out: &mut Vec<SpecDiagnostic>,
) -> Vec<usize> {
    let names: Vec<&str> = profiles.iter().map(|(n, _, _)| n.as_str()).collect();
    let mut chain = Vec::new();
    let mut seen = HashSet::new();
    let mut cur = names.iter().position(|n| *n == name);
    while let Some(i) = cur {
        if !seen.insert(i) {
            // Spell the cycle from its alphabetically first profile, so that it reads (and is
            // reported) the same whichever profile the walk started from.
            let start = chain.iter().position(|&j| j == i).unwrap_or(0);
            let mut cycle: Vec<usize> = chain[start..].to_vec();
            let first = (0..cycle.len())
                .min_by_key(|&k| names[cycle[k]])
                .unwrap_or(0);
            cycle.rotate_left(first);
            let mut spelled: Vec<&str> = cycle.iter().map(|&j| names[j]).collect();
            spelled.push(names[cycle[0]]);
            let closer = cycle[cycle.len() - 1];
            let span = profiles[closer]
                .2
                .as_ref()
                .and_then(|p| index.get(&format!("{p}/inherits")))
                .map(|s| s.value.clone())
                .unwrap_or(0..0);
            out.push(
                SpecDiagnostic::new(
                    source,
                    Code::Profile,
                    format!("profiles inherit in a cycle: {}", spelled.join(" → ")),
                )
                .label(span, "this closes the cycle")
                .help("the root of an `inherits` chain must inherit nothing"),
            );
            break;
        }
        chain.push(i);
        let (pname, def, ptr) = &profiles[i];
        cur = match def.get("inherits") {
            Some(Value::String(parent)) => {
                match names.iter().position(|n| n == parent) {
                    Some(j) => Some(j),
                    None => {
                        let span = ptr
                            .as_ref()
                            .and_then(|p| index.get(&format!("{p}/inherits")))
                            .map(|s| s.value.clone())
                            .unwrap_or(0..0);
                        out.push(
                        SpecDiagnostic::new(source, Code::Profile, format!("profile `{pname}` inherits from `{parent}`, which is not a profile"))
                            .label(span, "no such profile")
                            .maybe_help(hint(parent, "profiles", &names)),
                    );
                        None
                    }
                }
            }
            _ => None,
        };
    }
    chain.reverse();
    chain
}

const FIXED_STAGE_KEYS: [&str; 3] = ["kind", "needs", "for_each"];

fn apply(
    source: &SpecSource,
    spec_index: &SpanIndex,
    o: &mut Overlaid,
    pname: &str,
    def: &Value,
    ptr: Option<&str>,
    out: &mut Vec<SpecDiagnostic>,
) {
    let span_of = |sub: &str| -> std::ops::Range<usize> {
        ptr.and_then(|p| spec_index.get(&format!("{p}{sub}")))
            .map_or(0..0, |s| s.entry())
    };
    if let Some(Value::Object(run)) = def.get("run") {
        merge_into(
            o,
            "/run",
            run,
            ptr.map(|p| format!("{p}/run")),
            spec_index,
            pname,
            false,
        );
    }
    if let Some(Value::Object(services)) = def.get("services") {
        let names: Vec<String> = o
            .doc
            .get("services")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for (svc, table) in services {
            let sub = format!("/services/{}", escape_segment(svc));
            let Some(Value::Object(t)) = Some(table) else {
                continue;
            };
            if !names.contains(svc) {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                out.push(
                    SpecDiagnostic::new(source, Code::Profile, format!("profile `{pname}` overrides service `{svc}`, which the spec does not have"))
                        .label(span_of(&sub), "no such service")
                        .maybe_help(hint(svc, "services", &names)),
                );
                continue;
            }
            if t.contains_key("kind") {
                out.push(
                    SpecDiagnostic::new(
                        source,
                        Code::Profile,
                        format!("profile `{pname}` cannot change the `kind` of service `{svc}`"),
                    )
                    .label(
                        span_of(&format!("{sub}/kind")),
                        "a profile tunes values; it cannot change what a service is",
                    ),
                );
                continue;
            }
            merge_into(
                o,
                &sub,
                t,
                ptr.map(|p| format!("{p}{sub}")),
                spec_index,
                pname,
                false,
            );
        }
    }
    let stage_names: Vec<String> = o
        .doc
        .get("stages")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    if let Some(Value::Object(kinds)) = def.get("kinds") {
        let valid: Vec<&str> = StageKind::ALL.iter().map(|k| k.as_str()).collect();
        for (kind, table) in kinds {
            let sub = format!("/kinds/{}", escape_segment(kind));
            let Value::Object(t) = table else { continue };
            if StageKind::parse(kind).is_none() {
                out.push(
                    SpecDiagnostic::new(source, Code::Profile, format!("profile `{pname}` sets values for stage kind `{kind}`, which does not exist"))
                        .label(span_of(&sub), "not a stage kind")
                        .maybe_help(hint(kind, "stage kinds", &valid)),
                );
                continue;
            }
            if let Some(bad) = FIXED_STAGE_KEYS.iter().find(|k| t.contains_key(**k)) {
                out.push(fixed_key(
                    source,
                    pname,
                    bad,
                    span_of(&format!("{sub}/{bad}")),
                ));
                continue;
            }
            // Check the overlay against the kind's schema even when no stage of that kind
            // exists, so that a typo in a profile is never silent.
            if let Some(p) = ptr {
                let mut probe = t.clone();
                probe.insert("kind".to_owned(), Value::String(kind.clone()));
                let prefix = format!("{p}{sub}");
                let name_prefix = format!("profiles.{pname}.kinds.{kind}");
                structure().check_stage(
                    &Value::Object(probe),
                    &Target {
                        source,
                        index: spec_index,
                        prefix: &prefix,
                        partial: true,
                        stage_root: true,
                        name_prefix: &name_prefix,
                    },
                    out,
                );
            }
            for stage in &stage_names {
                let sp = format!("/stages/{}", escape_segment(stage));
                let is_kind = super::source::lookup(&o.doc, &format!("{sp}/kind"))
                    .and_then(Value::as_str)
                    == Some(kind.as_str());
                if is_kind {
                    merge_into(
                        o,
                        &sp,
                        t,
                        ptr.map(|p| format!("{p}{sub}")),
                        spec_index,
                        pname,
                        true,
                    );
                }
            }
        }
    }
    if let Some(Value::Object(stages)) = def.get("stages") {
        let names: Vec<&str> = stage_names.iter().map(String::as_str).collect();
        for (stage, table) in stages {
            let sub = format!("/stages/{}", escape_segment(stage));
            let Value::Object(t) = table else { continue };
            if !stage_names.contains(stage) {
                out.push(
                    SpecDiagnostic::new(source, Code::Profile, format!("profile `{pname}` overrides stage `{stage}`, which the spec does not have"))
                        .label(span_of(&sub), "no such stage")
                        .maybe_help(hint(stage, "stages", &names)),
                );
                continue;
            }
            if let Some(bad) = FIXED_STAGE_KEYS.iter().find(|k| t.contains_key(**k)) {
                out.push(fixed_key(
                    source,
                    pname,
                    bad,
                    span_of(&format!("{sub}/{bad}")),
                ));
                continue;
            }
            merge_into(
                o,
                &sub,
                t,
                ptr.map(|p| format!("{p}{sub}")),
                spec_index,
                pname,
                false,
            );
        }
    }
}

fn fixed_key(
    source: &SpecSource,
    pname: &str,
    key: &str,
    span: std::ops::Range<usize>,
) -> SpecDiagnostic {
    SpecDiagnostic::new(
        source,
        Code::Profile,
        format!("profile `{pname}` cannot change `{key}`"),
    )
    .label(
        span,
        "a profile tunes values; the shape of the pipeline stays the spec's",
    )
    .help("change the spec itself, or keep a second spec for the other shape")
}

/// Deep-merges `src` into the table at `dst_ptr`, moving the spans of what it sets along.
fn merge_into(
    o: &mut Overlaid,
    dst_ptr: &str,
    src: &Map<String, Value>,
    src_ptr: Option<String>,
    spec_index: &SpanIndex,
    pname: &str,
    via_kinds: bool,
) {
    let Some(Value::Object(dst)) = o.doc.pointer_mut(dst_ptr) else {
        return;
    };
    let mut written = Vec::new();
    merge_map(dst, src, dst_ptr, &mut written);
    for (dp, rel, container) in written {
        if let Some(sp) = &src_ptr {
            copy_spans(
                spec_index,
                &mut o.index,
                &format!("{sp}{rel}"),
                &dp,
                container,
            );
        }
        o.set_by.insert(dp, (pname.to_owned(), via_kinds));
    }
}

fn merge_map(
    dst: &mut Map<String, Value>,
    src: &Map<String, Value>,
    dst_ptr: &str,
    written: &mut Vec<(String, String, bool)>,
) {
    merge_map_rel(dst, src, dst_ptr, "", written);
}

fn merge_map_rel(
    dst: &mut Map<String, Value>,
    src: &Map<String, Value>,
    dst_ptr: &str,
    rel: &str,
    written: &mut Vec<(String, String, bool)>,
) {
    for (k, v) in src {
        let seg = escape_segment(k);
        let dp = format!("{dst_ptr}/{seg}");
        let r = format!("{rel}/{seg}");
        match (dst.get_mut(k), v) {
            (Some(Value::Object(d)), Value::Object(s)) => merge_map_rel(d, s, &dp, &r, written),
            _ => {
                dst.insert(k.clone(), v.clone());
                written.push((dp, r, v.is_object() || v.is_array()));
            }
        }
    }
}

/// Copies the spans of `from` and everything below it to the same places below `to`.
fn copy_spans(
    spec_index: &SpanIndex,
    index: &mut SpanIndex,
    from: &str,
    to: &str,
    container: bool,
) {
    if let Some(s) = spec_index.get(from) {
        index.insert(to.to_owned(), s.clone());
    }
    if !container {
        return;
    }
    for (p, s) in spec_index.below(from) {
        index.insert(format!("{to}{}", &p[from.len()..]), s.clone());
    }
}
