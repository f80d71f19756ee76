//! The report's HTML: Handlebars templates compiled in (`page.hbs`, the `run` partial in
//! `run.hbs`, `style.css`), rendered in strict mode with HTML escaping, so every value a run
//! recorded (a prompt, an error, a note) is shown as text, never read as markup.

use serde::Serialize;

use super::ReportError;
use super::run::RunView;
use super::sweep::SweepView;

const PAGE: &str = include_str!("page.hbs");
const RUN: &str = include_str!("run.hbs");
const CSS: &str = include_str!("style.css");

#[derive(Serialize)]
struct Page<'a> {
    title: String,
    version: &'static str,
    css: &'static str,
    run: Option<&'a RunView>,
    sweep: Option<&'a SweepView>,
    /// A rating form under each scene (the page `cinepipe serve` serves).
    rating_form: bool,
}

fn registry() -> Result<handlebars::Handlebars<'static>, ReportError> {
    let mut hb = handlebars::Handlebars::new();
    // A field the template names that the view lacks is a bug to see, not an empty cell.
    hb.set_strict_mode(true);
    // `Handlebars::new` escapes `{{…}}` for HTML already; said here so it is not lost.
    hb.register_escape_fn(handlebars::html_escape);
    hb.register_template_string("page", PAGE)
        .map_err(|e| ReportError::Render(e.to_string()))?;
    hb.register_partial("run", RUN)
        .map_err(|e| ReportError::Render(e.to_string()))?;
    Ok(hb)
}

fn render(page: &Page<'_>) -> Result<String, ReportError> {
    registry()?
        .render("page", page)
        .map_err(|e| ReportError::Render(e.to_string()))
}

pub(crate) fn render_run(run: &RunView, rating_form: bool) -> Result<String, ReportError> {
    let name = if run.name.is_empty() {
        String::new()
    } else {
        format!(" ({})", run.name)
    };
    render(&Page {
        title: format!("cinepipe run {}{name}", run.run_id),
        version: env!("CARGO_PKG_VERSION"),
        css: CSS,
        run: Some(run),
        sweep: None,
        rating_form,
    })
}

pub(crate) fn render_sweep(sweep: &SweepView) -> Result<String, ReportError> {
    render(&Page {
        title: format!("cinepipe sweep {}", sweep.suite),
        version: env!("CARGO_PKG_VERSION"),
        css: CSS,
        run: None,
        sweep: Some(sweep),
        rating_form: false,
    })
}
