//! Server functions of the runner: jobs, the model registry with its promotions and datasets, a loop's
//! post-training stack, and the demo's traffic simulator.

use leptos::prelude::*;
use slope_domain::*;

#[cfg(feature = "ssr")]
use super::server;

#[server]
pub async fn load_jobs() -> Result<Vec<JobRow>, ServerFnError> {
    let (runner, actor) = server::runner()?;
    Ok(server::read(runner.jobs(&actor, 200).await)?.iter().map(JobRow::from).collect())
}

#[server]
pub async fn load_job(id: i64) -> Result<JobView, ServerFnError> {
    let (runner, actor) = server::runner()?;
    server::read(runner.job_view(&actor, id).await)
}

/// Cancels a job from its page; answers the job as it now stands.
#[server]
pub async fn cancel_job(id: i64) -> Result<JobRow, ServerFnError> {
    let (runner, actor) = server::runner()?;
    let job = runner.cancel(&actor, id).await.map_err(|e| ServerFnError::new(e.to_string()))?;
    Ok(JobRow::from(&job))
}

#[server]
pub async fn load_models() -> Result<ModelsView, ServerFnError> {
    let (runner, actor) = server::runner()?;
    server::read(runner.models_view(&actor).await)
}

/// A loop's post-training stack, iterations and metabolism.
#[server]
pub async fn load_loop_stack(key: String) -> Result<LoopStack, ServerFnError> {
    let (runner, actor) = server::runner()?;
    server::read(runner.loop_stack(&actor, &key).await)
}

// ---- the demo's traffic simulator ------------------------------------------------------------------------

/// What the demo's traffic simulator is doing (`running: false` where none runs), for the banner that
/// labels simulated traffic.
#[server]
pub async fn load_simulator() -> Result<SimulatorStatus, ServerFnError> {
    let (simulator, actor) = server::simulator()?;
    server::read(simulator.status(&actor))
}
