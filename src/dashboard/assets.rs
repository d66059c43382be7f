//! The page, its script and style, and the chart library, compiled into the binary. The same
//! page works offline from one file (`tune report`'s `dashboard.html`): the three files are
//! inlined and the study's data is embedded instead of fetched.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/dashboard.js");
const STYLE: &str = include_str!("web/dashboard.css");
/// Apache ECharts 6.1.0, `dist/echarts.min.js` of the npm package (assets/vendor/echarts/README.md).
const ECHARTS: &str = include_str!("../../assets/vendor/echarts/echarts.min.js");
const ECHARTS_LICENCE: &str = include_str!("../../assets/vendor/echarts/LICENSE");

const STYLE_TAG: &str = r#"<link rel="stylesheet" href="dashboard.css">"#;
const ECHARTS_TAG: &str = r#"<script src="vendor/echarts.min.js"></script>"#;
const SCRIPT_TAG: &str = r#"<script src="dashboard.js"></script>"#;

fn typed(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

pub fn page() -> Response {
    typed("text/html; charset=utf-8", PAGE)
}

pub fn script() -> Response {
    typed("text/javascript; charset=utf-8", SCRIPT)
}

pub fn style() -> Response {
    typed("text/css; charset=utf-8", STYLE)
}

pub fn echarts() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=86400")], ECHARTS)
        .into_response()
}

pub fn echarts_licence() -> Response {
    typed("text/plain; charset=utf-8", ECHARTS_LICENCE)
}

/// The dashboard as one self-contained file showing `update` (a [`super::StudyUpdate`] from
/// version 0) and `retrains` (the [`super::SeedView`]s), as JSON.
pub fn offline_page(update: &str, retrains: &str) -> String {
    // JSON inside a script element must not close it.
    let safe = |json: &str| json.replace("</", "<\\/");
    let data = format!(
        "<script>window.TUNE_EMBEDDED = {{\"update\": {}, \"retrains\": {}}};</script>",
        safe(update),
        safe(retrains)
    );
    PAGE.replacen(STYLE_TAG, &format!("<style>{STYLE}</style>"), 1)
        .replacen(ECHARTS_TAG, &format!("<script>{}</script>", safe_script(ECHARTS)), 1)
        .replacen(SCRIPT_TAG, &format!("{data}<script>{}</script>", safe_script(SCRIPT)), 1)
}

/// Writes `dashboard.html` into `dir`: the dashboard of `name` as one file that works offline.
pub fn write_offline(
    dir: &std::path::Path,
    name: &str,
    trials: &std::collections::BTreeMap<usize, crate::study::TrialRecord>,
    space: (&[String], &[crate::study::objectives::Objective]),
    retrained: &[crate::report::retrains::Retrained],
) -> crate::error::Result<std::path::PathBuf> {
    let update = serde_json::to_string(&super::StudyUpdate::whole(name, trials, space)).expect("serialisable");
    let seeds = serde_json::to_string(&super::retrains(retrained)).expect("serialisable");
    let path = dir.join("dashboard.html");
    crate::files::write_atomic(&path, offline_page(&update, &seeds).as_bytes())?;
    Ok(path)
}

/// A script's text inlined in HTML: a literal `</script` inside it would end the element.
fn safe_script(code: &str) -> String {
    code.replace("</script", "<\\/script")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_its_three_files_and_the_offline_page_inlines_them_with_the_data() {
        for tag in [STYLE_TAG, ECHARTS_TAG, SCRIPT_TAG] {
            assert_eq!(PAGE.matches(tag).count(), 1, "{tag}");
        }
        let page = offline_page(r#"{"name": "</script><b>"}"#, "[]");
        for tag in [STYLE_TAG, ECHARTS_TAG, SCRIPT_TAG] {
            assert!(!page.contains(tag), "{tag} inlined");
        }
        assert!(
            page.contains("TUNE_EMBEDDED") && page.contains(r#"<\/script><b>"#),
            "the data cannot close its script"
        );
        assert!(page.len() > ECHARTS.len(), "the chart library is inside");
        assert!(!page.contains("src=\"http"), "nothing fetched from elsewhere");
    }
}
