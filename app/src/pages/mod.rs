//! One module per area of the product; each page fetches through `crate::api` and renders with
//! `crate::components`.

mod access;
mod adoption;
mod alerts;
mod annotation;
mod customers;
mod dashboard;
mod experiments;
mod loops;
mod okr;
mod review;
mod runner;
mod season_dashboard;
mod seasons;
mod squads;
mod units;

pub use access::*;
pub use adoption::*;
pub use alerts::*;
pub use annotation::*;
pub use customers::*;
pub use dashboard::*;
pub use experiments::*;
pub use loops::*;
pub use okr::*;
pub use review::*;
pub use runner::*;
pub use season_dashboard::*;
pub use seasons::*;
pub use squads::*;
pub use units::*;

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

/// The numeric route parameter `name`, or `None` when it is missing or not a number.
pub(crate) fn param_id(name: &'static str) -> Memo<Option<i64>> {
    let params = use_params_map();
    Memo::new(move |_| params.read().get(name).and_then(|v| v.parse().ok()))
}

/// What a page shows when its data could not be loaded.
#[component]
pub(crate) fn LoadError(error: ServerFnError) -> impl IntoView {
    let text = match error {
        ServerFnError::ServerError(message) => message,
        other => other.to_string(),
    };
    view! {
        <div class="load-error" role="alert">
            <h1>"Not available"</h1>
            <p>{text}</p>
            <p><a href="/">"Back to the seasons"</a></p>
        </div>
    }
}

pub(crate) fn loading() -> impl IntoView {
    view! { <p class="muted" aria-busy="true">"Loading…"</p> }
}

/// The error of a page whose address has no valid id; on the server it also sets the 404 status.
pub(crate) fn missing_id() -> ServerFnError {
    crate::set_not_found();
    ServerFnError::new("this address does not name anything")
}
