//! The Slope server: HTTP routes (pages, server functions, REST API, health) and start-up ([`startup`]).

pub mod api;
pub mod auth;
pub mod config;
pub mod openapi;
pub mod security;
pub mod startup;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{any, get};
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list, handle_server_fns_with_context};
use slope_app::{App, DemoMode, shell};
use slope_service::Services;
use slope_service::{Planning, ServiceError};
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

/// The organisation a fresh installation starts with (and the command line works in by default).
pub const DEFAULT_ORG: (&str, &str) = ("default", "Default organisation");

/// Settings of the router that are not services.
pub struct RouterSettings<'a> {
    pub site_root: &'a str,
    pub addr: SocketAddr,
    /// The sign-in page lists the demo accounts.
    pub demo: bool,
    /// Whether requests come over TLS and through which proxies.
    pub transport: security::Transport,
    /// Turns true when the server starts to shut down, so that long-lived answers end.
    pub stopping: Stopping,
}

/// The server's shutdown, seen from a handler: event streams end when it begins, since a graceful
/// shutdown waits for every open connection.
#[derive(Clone, Debug)]
pub struct Stopping(pub tokio::sync::watch::Receiver<bool>);

impl Stopping {
    /// Resolves once the shutdown has begun.
    pub async fn begun(&mut self) {
        if self.0.wait_for(|stopping| *stopping).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Builds every route of the server around its services.
pub fn router(services: Services, settings: RouterSettings<'_>) -> Router {
    let RouterSettings { site_root, addr, demo, transport, stopping } = settings;
    let leptos_options =
        LeptosOptions::builder().output_name("slope").site_root(site_root).site_pkg_dir("pkg").site_addr(addr).build();
    let auth_state = auth::AuthState { access: services.access.clone(), transport: transport.clone() };
    // Server functions and server-side rendering must see the same context: a page rendered on the
    // server calls the same functions that the browser later calls over HTTP.
    let provide = {
        let services = services.clone();
        move || {
            provide_context(services.clone());
            provide_context(DemoMode(demo));
            // A rendered page's inline scripts carry the nonce the security layer minted for the request
            // (in place of the one Leptos made); that layer writes the page's policy naming it, so those
            // scripts run and nothing else inline does.
            if let Some(minted) = use_context::<axum::http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<security::PageNonce>().cloned())
                && leptos::nonce::use_nonce().is_some()
            {
                provide_context(leptos::nonce::Nonce::from_value(minted.0));
            }
        }
    };
    let server_fns = {
        let provide = provide.clone();
        move |req| handle_server_fns_with_context(provide.clone(), req)
    };
    let pages = Router::new()
        .route("/api/{*fn_name}", any(server_fns))
        .leptos_routes_with_context(&leptos_options, generate_route_list(App), provide.clone(), {
            let options = leptos_options.clone();
            move || shell(options.clone())
        })
        // The not-found page is rendered by the app too, so it needs the same context: without it, its
        // inline scripts would carry a nonce that no policy names, and it would not hydrate.
        .fallback(leptos_axum::file_and_error_handler_with_context(provide, shell))
        .with_state(leptos_options)
        .layer(axum::middleware::from_fn(auth::require_sign_in));

    let planning = services.planning.clone();
    Router::new()
        .nest(openapi::BASE_PATH, api::router(services).merge(openapi::router()))
        // Without this, an unknown `/api/v1/…` path would fall to the server functions' catch-all below
        // and answer like a missing server function instead of the API's JSON 404.
        .route("/api/v1/{*rest}", any(|| async { api::ApiError::not_found("no such API route") }))
        .route("/auth/login", axum::routing::post(auth::sign_in).with_state(auth_state.clone()))
        .route("/auth/accept", axum::routing::post(auth::accept).with_state(auth_state.clone()))
        .route("/auth/logout", axum::routing::post(auth::sign_out).with_state(auth_state.clone()))
        .merge(pages)
        // Every route but the health checks learns who is asking first.
        .layer(axum::middleware::from_fn_with_state(auth_state, auth::authenticate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz).with_state(planning))
        .layer(axum::Extension(stopping))
        .layer(axum::middleware::from_fn_with_state(transport, security::headers))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
}

/// Ready when the database answers; load balancers stop sending traffic otherwise.
async fn readyz(State(planning): State<Planning>) -> (StatusCode, &'static str) {
    match planning.ready().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            // The service passes the database's error on as an internal one; its detail is what the
            // log needs.
            let detail = match e {
                ServiceError::Internal(detail) => detail,
                other => other.to_string(),
            };
            tracing::warn!(error = %detail, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
        }
    }
}
