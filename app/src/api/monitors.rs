//! Server functions of the alerts pages: the inbox, alerts and monitors, silencing and marking read.

use leptos::prelude::*;
use slope_domain::*;

#[cfg(feature = "ssr")]
use super::server;

#[server]
pub async fn load_alerts_page() -> Result<AlertsPage, ServerFnError> {
    let (monitors, actor) = server::monitors()?;
    server::read(monitors.alerts_page(&actor).await)
}

#[server]
pub async fn load_alert(id: i64) -> Result<AlertDetail, ServerFnError> {
    let (monitors, actor) = server::monitors()?;
    server::read(monitors.alert(&actor, id).await)
}

/// How many of the signed-in person's inbox entries are unread, for the header (0 when signed out).
#[server]
pub async fn load_unread() -> Result<i64, ServerFnError> {
    match crate::signed_in() {
        None => Ok(0),
        Some(actor) => {
            let (monitors, _) = server::monitors()?;
            server::read(monitors.unread(&actor).await)
        }
    }
}

/// Silences an alert for some hours; back to the alert.
#[server]
pub async fn silence_alert(alert_id: i64, hours: String, note: String) -> Result<super::Outcome, ServerFnError> {
    let (monitors, actor) = server::monitors()?;
    let input = match silence_form(&hours, &note) {
        Ok(input) => input,
        Err(errors) => return Ok(super::Outcome::Invalid(errors)),
    };
    server::write(monitors.silence(&actor, alert_id, &input).await, |a| format!("/alerts/{}?silenced=1", a.alert.id))
}

/// Reads the silence form, in the browser before submitting and on the server after.
pub fn silence_form(hours: &str, note: &str) -> Result<SilenceInput, FieldErrors> {
    let mut c = Checker::new();
    let hours = c.required_number("hours", hours);
    let input = SilenceInput { hours, note: Some(note.to_owned()) };
    c.finish(|| Some(()))?;
    input.parse().map(|_| input.clone())
}

/// Marks the inbox entries of one alert (or, with an empty id, all) read; back to the alerts page.
#[server]
pub async fn mark_alerts_read(alert_id: String) -> Result<super::Outcome, ServerFnError> {
    let (monitors, actor) = server::monitors()?;
    let alert = match super::optional_id("alert_id", &alert_id) {
        Ok(alert) => alert,
        Err(errors) => return Ok(super::Outcome::Invalid(errors)),
    };
    server::write(monitors.mark_read(&actor, alert).await, |n| format!("/alerts?read={n}"))
}
