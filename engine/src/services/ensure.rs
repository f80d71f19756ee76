//! Bringing up the services of one run, side by side: each is probed and reused, or launched,
//! or handed over to its `fallback`; a run that cannot have them all stops the ones that came up.

use std::collections::HashSet;
use std::path::PathBuf;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::error::{EnsureError, ServiceError};
use super::launch::file_stem;
use super::probe::{Probe, api_key, health_url, probe};
use super::stop::{Managed, kill_group};
use crate::spec::CheckedSpec;
use crate::spec::model::{Service, SpecFile, Stage};

/// Where the supervisor keeps launched servers' logs and PID files.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Folder for `<service>.log` and `<service>.pid`.
    pub state_dir: PathBuf,
}

impl ServiceOptions {
    pub fn new(state_dir: PathBuf) -> Self {
        ServiceOptions { state_dir }
    }
}

/// The services the stages of a spec name, in the spec's order, without repeats (fallbacks are
/// not included: [`Services::ensure`] reaches them only when needed).
pub fn used_services(spec: &SpecFile) -> Vec<String> {
    services_of(spec, |_| true)
}

/// [`used_services`], counting only the stages `keep` accepts (a run: the kinds it can run).
pub fn services_of(spec: &SpecFile, keep: impl Fn(&Stage) -> bool) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for stage in spec.stages.values().filter(|s| keep(s)) {
        for (_, name) in stage.services() {
            if seen.insert(name) {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// The services of one run. [`Services::shutdown`] stops the ones this run started; dropping
/// it without a shutdown kills them (a last resort for panics).
#[derive(Default)]
pub struct Services {
    notes: Vec<String>,
    managed: Vec<Managed>,
}

impl Services {
    /// Probes every named service, reusing those that answer and launching the others; a
    /// service that is down and cannot be launched hands over to its `fallback`, if any.
    /// Launches run side by side.
    pub async fn ensure(
        spec: &CheckedSpec,
        names: &[String],
        opts: &ServiceOptions,
        cancel: &CancellationToken,
    ) -> Result<Services, EnsureError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| EnsureError {
                error: ServiceError::Invalid {
                    service: names.first().cloned().unwrap_or_default(),
                    message: format!("cannot build an HTTP client: {e}"),
                },
                notes: Vec::new(),
            })?;
        let mut set = JoinSet::new();
        for name in names {
            let task = Task {
                client: client.clone(),
                spec: spec.spec.clone(),
                base_dir: spec.base_dir.clone(),
                opts: opts.clone(),
                cancel: cancel.clone(),
            };
            let span = tracing::info_span!("service", service = %name);
            let name = name.clone();
            set.spawn(async move { task.bring_up(name).await }.instrument(span));
        }
        let mut services = Services {
            notes: Vec::new(),
            managed: Vec::new(),
        };
        let mut first_err = None;
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((notes, managed, result)) => {
                    services.notes.extend(notes);
                    services.managed.extend(managed);
                    if let Err(e) = result {
                        first_err.get_or_insert(e);
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(ServiceError::Invalid {
                        service: String::new(),
                        message: format!("the task starting a service failed: {e}"),
                    });
                }
            }
        }
        match first_err {
            None => Ok(services),
            Some(error) => {
                // Stop what did come up: a run that cannot start leaves nothing behind.
                let mut notes = std::mem::take(&mut services.notes);
                notes.extend(services.shutdown().await);
                Err(EnsureError { error, notes })
            }
        }
    }

    /// What happened to each service (reused, launched, adopted, fell back), in order.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// PIDs of the servers this run started (or adopted), by service name.
    pub fn launched(&self) -> Vec<(&str, i32)> {
        self.managed
            .iter()
            .map(|m| (m.service.as_str(), m.pid))
            .collect()
    }

    /// Stops the processes this run started, each with `SIGTERM` then `SIGKILL` after its
    /// stop timeout; returns what was done.
    pub async fn shutdown(mut self) -> Vec<String> {
        let managed = std::mem::take(&mut self.managed);
        let mut set = JoinSet::new();
        for m in managed {
            set.spawn(m.stop().in_current_span());
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(line) = r {
                tracing::info!("{line}");
                out.push(line);
            }
        }
        out
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("notes", &self.notes)
            .field("managed", &self.managed)
            .finish_non_exhaustive()
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for m in &self.managed {
            kill_group(m.pid, libc::SIGKILL);
            let _ = std::fs::remove_file(&m.pid_file);
        }
    }
}

/// Everything one service's bring-up needs, owned so it can run on its own task.
pub(super) struct Task {
    pub(super) client: reqwest::Client,
    pub(super) spec: SpecFile,
    pub(super) base_dir: PathBuf,
    pub(super) opts: ServiceOptions,
    pub(super) cancel: CancellationToken,
}

type BringUp = (Vec<String>, Vec<Managed>, Result<(), ServiceError>);

impl Task {
    /// Logs a step as it happens (a launch can take a while) and keeps it for the run's notes.
    pub(super) fn note(&self, notes: &mut Vec<String>, line: String) {
        tracing::info!("{line}");
        notes.push(line);
    }

    /// Brings up `name`, walking its fallback chain when it is down and cannot be launched.
    async fn bring_up(self, name: String) -> BringUp {
        let mut notes = Vec::new();
        let mut managed = Vec::new();
        let mut visited = HashSet::new();
        let mut tried: Vec<String> = Vec::new();
        let first = name.clone();
        let mut current = name;
        loop {
            if !visited.insert(current.clone()) {
                // The checker refuses fallback cycles; this only guards the loop.
                return (notes, managed, Ok(()));
            }
            let Some(service) = self.spec.services.get(&current) else {
                let err = ServiceError::Invalid {
                    service: current.clone(),
                    message: "no such service in the spec".into(),
                };
                return (notes, managed, Err(err));
            };
            match self.one(&current, service, &mut notes).await {
                Ok(m) => {
                    managed.extend(m);
                    return (notes, managed, Ok(()));
                }
                Err(e) => match service.fallback() {
                    Some(next)
                        if !matches!(e, ServiceError::Cancelled { .. })
                            && !visited.contains(next) =>
                    {
                        tried.push(format!("`{current}`: {}", first_line(&e.to_string())));
                        self.note(
                            &mut notes,
                            format!(
                                "service `{current}` unavailable, falling back to `{next}`: {}",
                                first_line(&e.to_string())
                            ),
                        );
                        current = next.to_string();
                    }
                    _ if tried.is_empty() || matches!(e, ServiceError::Cancelled { .. }) => {
                        return (notes, managed, Err(e));
                    }
                    _ => {
                        tried.push(format!("`{current}`: {}", first_line(&e.to_string())));
                        let err = ServiceError::ChainDown {
                            service: first,
                            tried,
                        };
                        return (notes, managed, Err(err));
                    }
                },
            }
        }
    }

    /// Reuses, adopts or launches one service.
    async fn one(
        &self,
        name: &str,
        service: &Service,
        notes: &mut Vec<String>,
    ) -> Result<Option<Managed>, ServiceError> {
        let health = health_url(service);
        let url = service
            .urls()
            .first()
            .copied()
            .unwrap_or_default()
            .to_string();
        let pid_path = self.opts.state_dir.join(format!("{}.pid", file_stem(name)));
        let adopted = self.check_pid_file(name, &pid_path, notes);

        let key = api_key(service);
        let probed = probe(&self.client, &health, key.as_deref()).await;
        if probed == Probe::Up {
            return Ok(match adopted {
                Some(m) => {
                    self.note(
                        notes,
                        format!(
                            "service `{name}`: adopted the server (pid {}) an earlier cinepipe run \
                         started and did not stop; it is stopped when this run ends",
                            m.pid
                        ),
                    );
                    Some(m)
                }
                None => {
                    self.note(
                        notes,
                        format!("service `{name}`: reusing the server already answering at {url}"),
                    );
                    None
                }
            });
        }
        if let Some(m) = adopted {
            // An orphan that no longer answers is of no use: stop it and start afresh.
            self.note(notes, m.stop().await);
        }
        let Some(launch) = service.launch() else {
            return Err(ServiceError::Down {
                service: name.to_string(),
                url,
                why: probed.describe().to_string(),
            });
        };
        if let Probe::Other(answer) = probed {
            return Err(ServiceError::PortTaken {
                service: name.to_string(),
                url,
                answer,
            });
        }
        let ready_url = launch.ready_url.clone().unwrap_or(health);
        let m = self
            .launch(name, launch, &url, &ready_url, &pid_path, notes)
            .await?;
        Ok(Some(m))
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
