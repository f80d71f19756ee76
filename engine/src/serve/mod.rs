//! `cinepipe serve`: a local web view over a folder of runs. The runs list (filtered by spec
//! name and outcome) with the ratings summary, each run's report page (`report`, with a rating
//! form per scene), the run's files, and ratings posted from the page (`feedback::give`, the
//! same lock and checks as `cinepipe feedback`). It binds to loopback unless told otherwise.
//!
//! Every path a request names is checked before a file is touched: a run id is a plain folder
//! name of a run directly under the runs folder, and a file path is relative, made of plain
//! names only, and still inside the run folder once symbolic links are resolved.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::feedback::{FeedbackError, Rating, give, summarise};
use crate::report::ThumbOptions;
use crate::run_listing::{RunRow, runs_listing};

const PAGE: &str = include_str!("runs.hbs");

struct App {
    runs_dir: PathBuf,
}

/// Serves `runs_dir` on `listener` until the process ends.
pub async fn serve(runs_dir: PathBuf, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let app = Arc::new(App { runs_dir });
    let router = Router::new()
        .route("/", get(runs_page))
        .route(
            "/runs/{id}",
            get(|UrlPath(id): UrlPath<String>| async move {
                Redirect::permanent(&format!("/runs/{}/", crate::report::url_encode(&id)))
            }),
        )
        .route("/runs/{id}/", get(run_page))
        .route("/runs/{id}/feedback", post(rate))
        .route("/runs/{id}/{*path}", get(run_file))
        .with_state(app);
    axum::serve(listener, router).await
}

/// Whether an address keeps the server on this machine.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

/// The run folder of `id`: a plain name (no separator, not `.` or `..`) of a run folder right
/// under the runs folder.
fn run_dir(app: &App, id: &str) -> Result<PathBuf, (StatusCode, String)> {
    let plain = !id.is_empty()
        && id != "."
        && id != ".."
        && !id.contains(['/', '\\', '\0'])
        && !id.starts_with('.');
    if !plain {
        return Err((StatusCode::BAD_REQUEST, format!("`{id}` is not a run id")));
    }
    let dir = app.runs_dir.join(id);
    if !crate::show::is_run_dir(&dir) {
        return Err((StatusCode::NOT_FOUND, format!("no run `{id}`")));
    }
    Ok(dir)
}

#[derive(Debug, Deserialize)]
struct Filter {
    spec: Option<String>,
    outcome: Option<String>,
}

#[derive(Serialize)]
struct RunsView {
    dir: String,
    spec: String,
    outcome: String,
    runs: Vec<RunLine>,
    shown: usize,
    total: usize,
    ratings: Vec<RatingLine>,
}

#[derive(Serialize)]
struct RunLine {
    href: String,
    id: String,
    name: String,
    started: String,
    outcome: String,
    tone: &'static str,
    scenes: String,
    instances: String,
}

#[derive(Serialize)]
struct RatingLine {
    genre: String,
    template: String,
    model: String,
    runs: usize,
    ratings: usize,
    mean: String,
}

fn line(r: &RunRow) -> RunLine {
    RunLine {
        href: format!(
            "/runs/{}/",
            crate::report::url_encode(r.path.rsplit('/').next().unwrap_or(""))
        ),
        id: r.run_id.clone(),
        name: r.name.clone().unwrap_or_default(),
        started: r.started.clone().unwrap_or_default(),
        tone: match r.outcome.as_str() {
            "succeeded" => "good",
            "failed" | "killed" | "unreadable" => "bad",
            _ => "other",
        },
        outcome: r.outcome.clone(),
        scenes: r.scenes.map_or_else(|| "-".to_owned(), |n| n.to_string()),
        instances: format!(
            "{} ok, {} failed, {} skipped, {} pending",
            r.instances.succeeded, r.instances.failed, r.instances.skipped, r.instances.pending
        ),
    }
}

async fn runs_page(State(app): State<Arc<App>>, Query(f): Query<Filter>) -> Response {
    let dir = app.runs_dir.clone();
    let built = tokio::task::spawn_blocking(move || {
        let listing = runs_listing(&dir)?;
        let ratings = summarise(&dir)?;
        Ok::<_, std::io::Error>((listing, ratings))
    })
    .await;
    let (listing, ratings) = match built {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the runs: {e}"),
            );
        }
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let spec = f.spec.unwrap_or_default();
    let outcome = f.outcome.unwrap_or_default();
    let total = listing.runs.len();
    let runs = listing
        .runs
        .iter()
        .rev()
        .filter(|r| spec.is_empty() || r.name.as_deref().is_some_and(|n| n.contains(&spec)))
        .filter(|r| outcome.is_empty() || r.outcome == outcome)
        .map(line)
        .collect::<Vec<_>>();
    let view = RunsView {
        shown: runs.len(),
        dir: listing.dir,
        spec,
        outcome,
        runs,
        total,
        ratings: ratings
            .iter()
            .map(|r| RatingLine {
                genre: r.genre.clone(),
                template: r.template_version.clone(),
                model: r.model.clone(),
                runs: r.runs,
                ratings: r.ratings(),
                mean: format!("{:.2}", r.mean()),
            })
            .collect(),
    };
    let mut hb = handlebars::Handlebars::new();
    hb.set_strict_mode(true);
    match hb.render_template(PAGE, &view) {
        Ok(html) => Html(html).into_response(),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn run_page(State(app): State<Arc<App>>, UrlPath(id): UrlPath<String>) -> Response {
    let dir = match run_dir(&app, &id) {
        Ok(d) => d,
        Err((status, message)) => return text(status, message),
    };
    match tokio::task::spawn_blocking(move || {
        crate::report::run_page(&dir, ThumbOptions::default())
    })
    .await
    {
        Ok(Ok(html)) => Html(html).into_response(),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A file of the run: relative, plain names only, inside the run folder after links resolve.
fn file_in(dir: &Path, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel);
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let root = dir.canonicalize().ok()?;
    let path = root.join(rel).canonicalize().ok()?;
    (path.starts_with(&root) && path.is_file()).then_some(path)
}

async fn run_file(
    State(app): State<Arc<App>>,
    UrlPath((id, rel)): UrlPath<(String, String)>,
) -> Response {
    let dir = match run_dir(&app, &id) {
        Ok(d) => d,
        Err((status, message)) => return text(status, message),
    };
    let Some(path) = file_in(&dir, &rel) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no file `{rel}` in run `{id}`"),
        );
    };
    let kind = match path.extension().and_then(|e| e.to_str()) {
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("html") => "text/html; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, kind)], bytes).into_response(),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct RatingForm {
    scene: Option<String>,
    rating: String,
    comment: Option<String>,
    author: Option<String>,
}

async fn rate(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    Form(f): Form<RatingForm>,
) -> Response {
    let dir = match run_dir(&app, &id) {
        Ok(d) => d,
        Err((status, message)) => return text(status, message),
    };
    let Ok(stars) = f.rating.trim().parse::<u8>() else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("rating `{}` is not a number of stars (1 to 5)", f.rating),
        );
    };
    let none_if_empty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let rating = Rating {
        scene: none_if_empty(f.scene),
        rating: stars,
        comment: none_if_empty(f.comment),
        author: none_if_empty(f.author),
    };
    match tokio::task::spawn_blocking(move || give(&dir, &rating)).await {
        Ok(Ok(_)) => {
            Redirect::to(&format!("/runs/{}/", crate::report::url_encode(&id))).into_response()
        }
        Ok(Err(e)) if e.is_bad_input() => text(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Err(e @ (FeedbackError::NotARun { .. } | FeedbackError::NoMetadata { .. }))) => {
            text(StatusCode::CONFLICT, e.to_string())
        }
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
