//! `tune dashboard`: a live, read-only web page over a catalog of studies (a runs directory or
//! a PostgreSQL store). A small JSON API serves the studies and, for each, the trials changed
//! since the version a page last saw; the page polls it every second and redraws. The page, its
//! script and the chart library (Apache ECharts, vendored from npm under `assets/vendor/`) are
//! compiled into the binary: nothing is fetched from elsewhere at run time.
//!
//! Safe beside running workers: it only reads the store, with a cursor as the workers do, and
//! writes nothing. Every route is fixed; a study name from a request is only compared with the
//! catalog's own names, so no request can name a file.

mod access;
mod assets;
mod live;
mod views;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;

pub use access::Access;
pub use assets::{offline_page, write_offline};
pub use live::{LiveStudy, Studies};
pub use views::{SeedView, StudySummary, StudyUpdate, TrialView, retrains};

use crate::error::{Result, TuneError};
use crate::study::storage::Catalog;

/// Where to listen and who may read.
#[derive(Debug, Clone)]
pub struct Options {
    pub host: IpAddr,
    /// 0: any free port (the URL printed says which).
    pub port: u16,
    pub token: Option<String>,
}

struct Shared {
    studies: Mutex<Studies>,
    access: Access,
}

/// Serves the dashboard until Ctrl-C. Prints the URL to open (with its token) first.
pub fn serve(catalog: Box<dyn Catalog>, options: Options) -> Result<()> {
    let access = Access::for_host(options.host, options.token)?;
    let location = catalog.location();
    let mut studies = Studies::new(catalog);
    // Fail now, with the store's own error, rather than on the first page load.
    let count = studies.all()?.len();
    let shared = Arc::new(Shared { studies: Mutex::new(studies), access });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| TuneError::Study(format!("cannot start the dashboard's runtime: {e}")))?;
    runtime.block_on(async move {
        let addr = SocketAddr::new(options.host, options.port);
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            TuneError::Study(format!("cannot listen on {addr}: {e}; choose another --port (0 picks a free one)"))
        })?;
        let bound = listener.local_addr().map_err(|e| TuneError::Study(format!("{addr}: {e}")))?;
        let token = shared.access.token.as_ref().map_or(String::new(), |t| format!("?token={t}"));
        let shown = match bound.ip() {
            ip if ip.is_unspecified() => SocketAddr::new(IpAddr::from([127, 0, 0, 1]), bound.port()),
            _ => bound,
        };
        println!("dashboard of {location} ({count} studies): http://{shown}/{token}");
        if !bound.ip().is_loopback() {
            println!(
                "listening on {bound} for other machines too: share the token only with who may read these studies"
            );
        }
        use std::io::Write;
        std::io::stdout().flush().ok();
        axum::serve(listener, router(shared))
            .with_graceful_shutdown(async {
                tokio::signal::ctrl_c().await.ok();
            })
            .await
            .map_err(|e| TuneError::Study(format!("the dashboard stopped: {e}")))
    })
}

fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/api/studies", get(list))
        .route("/api/studies/{name}", get(study))
        .route("/api/studies/{name}/retrains", get(retrained))
        .layer(middleware::from_fn_with_state(shared.clone(), require_token));
    Router::new()
        .route("/", get(|| async { assets::page() }))
        .route("/dashboard.js", get(|| async { assets::script() }))
        .route("/dashboard.css", get(|| async { assets::style() }))
        .route("/vendor/echarts.min.js", get(|| async { assets::echarts() }))
        .route("/vendor/LICENSE", get(|| async { assets::echarts_licence() }))
        .merge(api)
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such page\n") })
        .layer(middleware::from_fn(security_headers))
        .with_state(shared)
}

/// The data (never the page's code) needs the token where there is one.
async fn require_token(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let auth = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if shared.access.allows(request.uri().query(), auth) {
        next.run(request).await
    } else {
        (StatusCode::UNAUTHORIZED, "this dashboard needs its token: open the URL `tune dashboard` printed\n")
            .into_response()
    }
}

/// The page runs only its own scripts, and the browser guesses no content types.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, "nosniff".parse().expect("a header value"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:".parse().expect("a header value"),
    );
    h.insert(header::REFERRER_POLICY, "no-referrer".parse().expect("a header value"));
    response
}

/// Runs a read of the studies off the async threads (a store's client blocks).
async fn read<T: Send + 'static>(
    shared: Arc<Shared>,
    f: impl FnOnce(&mut Studies) -> Result<Option<T>> + Send + 'static,
) -> std::result::Result<T, Response> {
    let done = tokio::task::spawn_blocking(move || {
        let mut studies = shared.studies.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut studies)
    })
    .await;
    match done {
        Ok(Ok(Some(v))) => Ok(v),
        Ok(Ok(None)) => Err((StatusCode::NOT_FOUND, "no such study\n").into_response()),
        Ok(Err(e)) => Err((StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response()),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()),
    }
}

async fn list(State(shared): State<Arc<Shared>>) -> Response {
    let answer = read(shared, |s| {
        let location = s.location();
        let studies: Vec<StudySummary> = s.all()?.into_iter().map(StudySummary::of).collect();
        Ok(Some(serde_json::json!({ "location": location, "studies": studies })))
    })
    .await;
    answer.map_or_else(|e| e, |v| Json(v).into_response())
}

#[derive(serde::Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
}

async fn study(State(shared): State<Arc<Shared>>, Path(name): Path<String>, Query(q): Query<Since>) -> Response {
    let answer = read(shared, move |s| {
        Ok(s.study(&name)?.map(|live| serde_json::to_string(&StudyUpdate::of(live, q.since)).expect("serialisable")))
    })
    .await;
    answer.map_or_else(|e| e, |body| ([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn retrained(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let answer = read(shared, move |s| {
        let Some(live) = s.study(&name)? else { return Ok(None) };
        let found = crate::report::retrains::find(&live.entry.dir.join("retrain"))?;
        Ok(Some(retrains(&found)))
    })
    .await;
    answer.map_or_else(|e| e, |v| Json(v).into_response())
}
