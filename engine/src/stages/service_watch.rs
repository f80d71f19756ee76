//! Whether a service answers again after an attempt could not reach it: the executor asks
//! before it spends the retry (`exec::SERVICE_RECOVERY_BOUND`), so a server restarting under a
//! supervisor is waited for instead of failing the run.

use std::sync::Arc;
use std::time::Duration;

use crate::exec::{BoxFuture, ServiceWatch};
use crate::services::{Probe, health_urls, probe};
use crate::spec::CheckedSpec;

/// The first pause between two rounds of health checks; it doubles up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

/// Asks each URL of the service its health check (`/system_stats`, `/models`), with backoff,
/// until one answers.
pub struct HealthWatch;

impl ServiceWatch for HealthWatch {
    fn until_answering(
        &self,
        spec: Arc<CheckedSpec>,
        service: String,
        bound: Duration,
    ) -> BoxFuture<'static, bool> {
        Box::pin(async move {
            let Some(urls) = spec.spec.services.get(&service).map(health_urls) else {
                return true;
            };
            let Ok(client) = crate::clients::http() else {
                return false;
            };
            let deadline = tokio::time::Instant::now() + bound;
            let mut pause = FIRST_PAUSE;
            loop {
                for url in &urls {
                    // A probe has its own short bound (3 s).
                    if probe(&client, url, None).await == Probe::Up {
                        return true;
                    }
                }
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return false;
                }
                tokio::time::sleep(pause.min(deadline - now)).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
        })
    }
}
