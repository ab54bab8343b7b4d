//! The Slope server: HTTP routes (pages, server functions, REST API, health) and start-up.

pub mod api;
pub mod config;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{any, get};
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list, handle_server_fns_with_context};
use slope_app::{App, ServerCtx, shell};
use slope_domain::OrgId;
use slope_service::{Loops, Planning, Runner};
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

/// The organisation every request works in until tenants arrive.
pub const DEFAULT_ORG: (&str, &str) = ("default", "Default organisation");

/// Builds every route of the server around the planning and loop metrics services.
pub fn router(
    planning: Planning,
    loops: Loops,
    runner: Runner,
    org: OrgId,
    site_root: &str,
    addr: SocketAddr,
) -> Router {
    let leptos_options =
        LeptosOptions::builder().output_name("slope").site_root(site_root).site_pkg_dir("pkg").site_addr(addr).build();
    let ctx = ServerCtx { planning: planning.clone(), loops: loops.clone(), runner: runner.clone(), org };
    // Server functions and server-side rendering must see the same context: a page rendered on the
    // server calls the same functions that the browser later calls over HTTP.
    let provide = move || provide_context(ctx.clone());
    let server_fns = {
        let provide = provide.clone();
        move |req| handle_server_fns_with_context(provide.clone(), req)
    };
    let pages = Router::new()
        .route("/api/{*fn_name}", any(server_fns))
        .leptos_routes_with_context(&leptos_options, generate_route_list(App), provide, {
            let options = leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler(shell))
        .with_state(leptos_options);

    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz).with_state(planning.clone()))
        .nest("/api/v1", api::router(api::ApiState { planning, loops, runner, org }))
        // Without this, an unknown `/api/v1/…` path would fall to the server functions' catch-all below
        // and answer like a missing server function instead of the API's JSON 404.
        .route("/api/v1/{*rest}", any(|| async { api::ApiError::not_found("no such API route") }))
        .merge(pages)
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
}

/// Ready when the database answers; load balancers stop sending traffic otherwise.
async fn readyz(State(planning): State<Planning>) -> (StatusCode, &'static str) {
    match planning.store().ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
        }
    }
}
