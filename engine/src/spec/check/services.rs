//! The rules of services: URLs, API key variables, fallback chains, and every reference to a
//! service by name and kind.

use std::collections::HashSet;

use super::super::diagnostic::{Code, SpecDiagnostic, article, hint};
use super::super::model::{Service, ServiceKind};
use super::{Checker, Parsed, service_ptr};

impl<'a> Checker<'a> {
    pub(super) fn check_services(&mut self) {
        let services: Vec<(String, Service)> = self
            .parsed
            .services
            .iter()
            .filter(|(n, _)| self.wants("services", n))
            .filter_map(|(n, s)| s.clone().map(|s| (n.clone(), s)))
            .collect();
        for (name, svc) in &services {
            let ptr = service_ptr(name);
            match svc {
                Service::Openai(o) => {
                    self.check_url(&format!("{ptr}/base_url"), &o.base_url);
                    if let Some(env) = &o.api_key_env {
                        let looks_like_name = !env.is_empty()
                            && env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                            && !env.starts_with(|c: char| c.is_ascii_digit());
                        let looks_like_key = env.starts_with("sk-")
                            || (env.len() >= 32 && env.chars().any(|c| c.is_ascii_lowercase()));
                        if !looks_like_name || looks_like_key {
                            let span = self.value_span(&format!("{ptr}/api_key_env"));
                            // No source excerpt: if this is a key, printing the line would
                            // leak it into terminals and CI logs.
                            let (line, col) = line_col(&self.source.text, span.start);
                            self.out.push(
                                SpecDiagnostic::without_source(
                                    Code::InvalidValue,
                                    format!("`api_key_env` of service `{name}` must name an environment variable, e.g. `OPENAI_API_KEY` ({}:{line}:{col})", self.source.name),
                                )
                                .help("this looks like a key itself: never write a key in a spec; put it in the environment and name the variable here")
                                .at(format!("{ptr}/api_key_env")),
                            );
                        }
                    }
                }
                Service::Comfyui(c) => {
                    let mut seen = HashSet::new();
                    for (i, u) in c.urls.iter().enumerate() {
                        let up = format!("{ptr}/urls/{i}");
                        self.check_url(&up, u);
                        if !seen.insert(u.trim_end_matches('/')) {
                            let span = self.value_span(&up);
                            self.err(
                                Code::InvalidValue,
                                format!("`{u}` is listed twice in `urls` of service `{name}`"),
                                span,
                                "listed again here",
                                None,
                            );
                        }
                    }
                }
            }
            if let Some(fb) = svc.fallback() {
                self.check_service_ref(
                    &format!("{ptr}/fallback"),
                    &format!("`fallback` of service `{name}`"),
                    fb,
                    svc.kind(),
                );
                if fb == name {
                    let span = self.value_span(&format!("{ptr}/fallback"));
                    self.err(
                        Code::InvalidValue,
                        format!("service `{name}` falls back to itself"),
                        span,
                        "a fallback must be another service",
                        None,
                    );
                }
            }
        }
        // Fallback chains must end.
        let mut reported = HashSet::new();
        for (name, _) in &services {
            let mut chain = vec![name.as_str()];
            let mut cur = name.as_str();
            while let Some(Some(svc)) = self.parsed.services.get(cur) {
                let Some(next) = svc.fallback() else { break };
                if next == cur {
                    break;
                }
                if let Some(pos) = chain.iter().position(|c| *c == next) {
                    let cycle: Vec<&str> = chain[pos..].to_vec();
                    let mut key: Vec<&str> = cycle.clone();
                    key.sort_unstable();
                    if reported.insert(key.join(",")) {
                        let mut spelled: Vec<String> =
                            cycle.iter().map(|c| format!("`{c}`")).collect();
                        spelled.push(format!("`{next}`"));
                        let span = self.value_span(&format!("{}/fallback", service_ptr(cur)));
                        self.err(
                            Code::Cycle,
                            format!("`fallback` forms a cycle: {}", spelled.join(" → ")),
                            span,
                            "this closes the cycle",
                            Some(
                                "the last service of a fallback chain must have no `fallback`"
                                    .into(),
                            ),
                        );
                    }
                    break;
                }
                chain.push(next);
                cur = next;
            }
        }
    }

    pub(super) fn check_url(&mut self, ptr: &str, url: &str) {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        if rest
            .is_none_or(|r| r.is_empty() || r.starts_with('/') || r.contains(char::is_whitespace))
        {
            let span = self.value_span(ptr);
            self.err(
                Code::InvalidValue,
                format!("`{url}` is not an http:// or https:// URL"),
                span,
                "not a URL",
                Some("e.g. \"http://127.0.0.1:8188\"".into()),
            );
        }
    }

    /// Names of the services of a kind (and of those too broken to tell), for hints.
    pub(super) fn services_of(&self, want: ServiceKind) -> Vec<&'a str> {
        let parsed: &'a Parsed = self.parsed;
        parsed
            .services
            .iter()
            .filter(|(_, s)| s.as_ref().is_none_or(|s| s.kind() == want))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    pub(super) fn check_service_ref(
        &mut self,
        ptr: &str,
        what: &str,
        name: &str,
        want: ServiceKind,
    ) {
        let span = self.value_span(ptr);
        match self.parsed.services.get(name) {
            None => {
                let names = self.services_of(want);
                let help = if names.is_empty() {
                    Some(format!(
                        "add a `[services.{name}]` table with `kind = \"{}\"`",
                        want.as_str()
                    ))
                } else {
                    hint(name, &format!("`{}` services", want.as_str()), &names)
                };
                self.err(
                    Code::UnknownService,
                    format!("{what} names unknown service `{name}`"),
                    span,
                    "no service has this name",
                    help,
                );
            }
            Some(Some(svc)) if svc.kind() != want => {
                let others = self.services_of(want);
                let help = if others.is_empty() {
                    None
                } else {
                    Some(format!(
                        "`{}` services: {}",
                        want.as_str(),
                        others.join(", ")
                    ))
                };
                self.err(
                    Code::ServiceKind,
                    format!(
                        "{what} must be {} `{}` service, but `{name}` is `{}`",
                        article(want.as_str()),
                        want.as_str(),
                        svc.kind().as_str()
                    ),
                    span,
                    "wrong kind of service",
                    help,
                );
            }
            _ => {}
        }
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
