//! Slope's Leptos UI: pages rendered on the server, with islands (the forms) that hydrate in the browser.
//!
//! Pages get data through the server functions in [`api`], which are thin: they parse form fields with
//! the domain crate's rules and call the service layer. Nothing here touches a database.

#![recursion_limit = "256"]

pub mod api;
mod components;
mod pages;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::{SsrMode, path};

use pages::*;

/// Whether the server runs the live demo, in which the sign-in page lists the demo accounts. It is
/// provided as context beside the server's `slope_service::Services` (which server functions and
/// server-side rendering read as context too), because it is a setting, not a service.
#[cfg(feature = "ssr")]
#[derive(Clone, Copy, Debug)]
pub struct DemoMode(pub bool);

/// Who sent the request, as the server's authentication layer found it (a session cookie or a bearer
/// token); put on every request, so pages and server functions read it from the request parts.
#[cfg(feature = "ssr")]
#[derive(Clone, Debug)]
pub struct Authenticated(pub Option<slope_domain::Actor>);

/// The signed-in actor of the request being rendered. Pages use it only to leave out controls the
/// actor may not use; the service layer enforces the rule whatever the page shows.
pub(crate) fn signed_in() -> Option<slope_domain::Actor> {
    #[cfg(feature = "ssr")]
    {
        use_context::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<Authenticated>().and_then(|a| a.0.clone()))
    }
    #[cfg(not(feature = "ssr"))]
    {
        None
    }
}

/// Whether the signed-in actor may do `action`; false when nobody is signed in.
pub(crate) fn may(action: slope_domain::Action) -> bool {
    signed_in().is_some_and(|a| a.can(action))
}

/// Marks the response being rendered as 404 Not Found; outside server rendering it does nothing.
pub(crate) fn set_not_found() {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
}

/// The HTML document around the app, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <meta name="description" content="Slope: plan seasons, OKRs and squad goals grounded in loop metrics."/>
                <HydrationScripts options islands=true/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="slope" href="/pkg/slope.css"/>
        <Title formatter=|title: String| if title.is_empty() { "Slope".to_owned() } else { format!("{title} · Slope") }/>
        <Router>
            <a class="skip" href="#main">"Skip to content"</a>
            <header class="topbar">
                <A href="/" attr:class="brand">"Slope"</A>
                <MainNav/>
                // Only members who read the organisation have alerts routed to them.
                {may(slope_domain::Action::Read).then(|| view! { <InboxLink/> })}
                <SignedInAs/>
            </header>
            <main id="main">
                // Every page renders completely on the server before its response starts (async mode),
                // so a missing entity can still answer 404 and pages read well without JavaScript.
                <Routes fallback=|| view! { <NotFound/> }>
                    <Route path=path!("/") view=SeasonsPage ssr=SsrMode::Async/>
                    <Route path=path!("/seasons/new") view=NewSeasonPage ssr=SsrMode::Async/>
                    <Route path=path!("/seasons/:id") view=SeasonPage ssr=SsrMode::Async/>
                    <Route path=path!("/seasons/:id/edit") view=EditSeasonPage ssr=SsrMode::Async/>
                    <Route path=path!("/seasons/:id/dashboard") view=SeasonDashboardPage ssr=SsrMode::Async/>
                    <Route path=path!("/seasons/:id/review") view=SeasonReviewPage ssr=SsrMode::Async/>
                    <Route path=path!("/experiments") view=ExperimentsPage ssr=SsrMode::Async/>
                    <Route path=path!("/experiments/:key") view=ExperimentPage ssr=SsrMode::Async/>
                    <Route path=path!("/seasons/:id/objectives/new") view=NewObjectivePage ssr=SsrMode::Async/>
                    <Route path=path!("/objectives/:id/edit") view=EditObjectivePage ssr=SsrMode::Async/>
                    <Route path=path!("/objectives/:id/key-results/new") view=NewKeyResultPage ssr=SsrMode::Async/>
                    <Route path=path!("/key-results/:id") view=KeyResultPage ssr=SsrMode::Async/>
                    <Route path=path!("/key-results/:id/edit") view=EditKeyResultPage ssr=SsrMode::Async/>
                    <Route path=path!("/squads") view=SquadsPage ssr=SsrMode::Async/>
                    <Route path=path!("/squads/new") view=NewSquadPage ssr=SsrMode::Async/>
                    <Route path=path!("/squads/:id/edit") view=EditSquadPage ssr=SsrMode::Async/>
                    <Route path=path!("/squads/:id/dashboard") view=SquadDashboardPage ssr=SsrMode::Async/>
                    <Route path=path!("/squads/:id/goals/new") view=NewGoalPage ssr=SsrMode::Async/>
                    <Route path=path!("/squad-goals/:id") view=GoalPage ssr=SsrMode::Async/>
                    <Route path=path!("/squad-goals/:id/edit") view=EditGoalPage ssr=SsrMode::Async/>
                    <Route path=path!("/loops") view=LoopsPage ssr=SsrMode::Async/>
                    <Route path=path!("/loops/:key") view=LoopPage ssr=SsrMode::Async/>
                    <Route path=path!("/metrics/:key") view=MetricPage ssr=SsrMode::Async/>
                    <Route path=path!("/customers") view=CustomersPage ssr=SsrMode::Async/>
                    <Route path=path!("/jobs") view=JobsPage ssr=SsrMode::Async/>
                    <Route path=path!("/jobs/:id") view=JobPage ssr=SsrMode::Async/>
                    <Route path=path!("/models") view=ModelsPage ssr=SsrMode::Async/>
                    <Route path=path!("/adoption") view=AdoptionPage ssr=SsrMode::Async/>
                    <Route path=path!("/alerts") view=AlertsPageView ssr=SsrMode::Async/>
                    <Route path=path!("/alerts/:id") view=AlertPage ssr=SsrMode::Async/>
                    <Route path=path!("/login") view=LoginPage ssr=SsrMode::Async/>
                    <Route path=path!("/audit") view=AuditPage ssr=SsrMode::Async/>
                    <Route path=path!("/members") view=MembersPage ssr=SsrMode::Async/>
                    <Route path=path!("/units") view=UnitsPage ssr=SsrMode::Async/>
                    <Route path=path!("/units/:id/edit") view=EditUnitPage ssr=SsrMode::Async/>
                    <Route path=path!("/invitations/:secret") view=InvitationPage ssr=SsrMode::Async/>
                    <Route path=path!("/annotate") view=AnnotatePage ssr=SsrMode::Async/>
                    <Route path=path!("/annotate/:key") view=WorkPageView ssr=SsrMode::Async/>
                    <Route path=path!("/annotation-queues/:key") view=QueuePageView ssr=SsrMode::Async/>
                    <Route path=path!("/annotation-queues/:key/edit") view=EditQueuePage ssr=SsrMode::Async/>
                </Routes>
            </main>
        </Router>
    }
}

/// The main navigation: the whole product for members who read the organisation, only the annotation
/// queues for annotators (who see nothing else of it).
#[component]
fn MainNav() -> impl IntoView {
    let reader = signed_in().is_none_or(|a| a.can(slope_domain::Action::Read));
    view! {
        <nav aria-label="Main">
            {reader.then(|| view! {
                <A href="/">"Seasons"</A>
                <A href="/squads">"Squads"</A>
                <A href="/loops">"Loops"</A>
                <A href="/experiments">"Experiments"</A>
                <A href="/customers">"Customers"</A>
                <A href="/jobs">"Jobs"</A>
                <A href="/models">"Models"</A>
            })}
            <A href="/annotate">"Annotate"</A>
            {reader.then(|| view! {
                <A href="/adoption">"Adoption"</A>
                <A href="/units">"Units"</A>
                <A href="/audit">"Audit"</A>
            })}
        </nav>
    }
}

#[component]
fn NotFound() -> impl IntoView {
    set_not_found();
    view! {
        <Title text="Not found"/>
        <h1>"Not found"</h1>
        <p>"There is no page here. " <A href="/">"Back to the seasons"</A></p>
    }
}

/// The browser entry point: hydrates the islands (the forms) in the server-rendered HTML.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // Only islands run in the browser and there is no client-side router, so a server function's
    // redirect after a save is a plain page load.
    let _ = leptos::server_fn::redirect::set_redirect_hook(|location: &str| {
        let _ = leptos::prelude::window().location().set_href(location);
    });
    leptos::mount::hydrate_islands();
    // End-to-end tests wait for this mark: clicks before hydration would be lost.
    if let Some(body) = leptos::prelude::document().body() {
        let _ = body.set_attribute("data-hydrated", "true");
    }
}
