//! Expert annotation: the queues (`/annotate`), an annotator's work page (`/annotate/:key`, item by item
//! with keyboard shortcuts, the next item loaded in place), a queue's page for operators and readers
//! (`/annotation-queues/:key`: progress, agreement, quality, flagged items, operator actions), and the
//! annotation budget panel that key result and loop pages show.

// Long on purpose: the annotator's island (its form, shortcuts and in-place updates), the queue page's
// tables and the budget's learning-curve chart are one area of the product, and share helpers.

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};
use slope_domain::*;

use super::{LoadError, loading};
use crate::api::*;
use crate::components::*;

// ---- the queues ----------------------------------------------------------------------------------

#[component]
pub fn AnnotatePage() -> impl IntoView {
    let data = Resource::new(|| (), |_| async move { load_annotation_queues().await });
    view! {
        <Title text="Annotate"/>
        <h1>"Annotation queues"</h1>
        <p class="lede">
            "Experts review the loop's real interactions: they correct suggestions or pick the better of two, rate and tag them. "
            "Their labels become training data, and each key result's annotation budget says how many more it needs."
        </p>
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(list) if list.is_empty() => view! { <p class="empty">"No annotation queues are open to you yet."</p> }.into_any(),
                    Ok(list) => view! { <QueueTable queues=list/> }.into_any(),
                }
            })}
        </Suspense>
        {crate::may(slope_domain::Action::Operate).then(|| view! {
            <section class="panel" aria-labelledby="new-queue-heading">
                <h2 id="new-queue-heading">"New queue"</h2>
                <QueueForm queue=None/>
            </section>
        })}
    }
}

#[component]
fn QueueTable(queues: Vec<QueueSummary>) -> impl IntoView {
    let readers = crate::may(slope_domain::Action::Read);
    let rows = queues
        .into_iter()
        .map(|q| {
            let p = q.progress.clone();
            let key = q.queue.key.clone();
            view! {
                <tr>
                    <th scope="row">
                        {if readers {
                            view! { <a href=format!("/annotation-queues/{key}")>{q.queue.settings.name.clone()}</a> }.into_any()
                        } else {
                            view! { <span>{q.queue.settings.name.clone()}</span> }.into_any()
                        }}
                        <div class="muted">{format!("{} · loop {} · v{}", q.queue.settings.labels.describe(), q.queue.loop_key, q.queue.version)}</div>
                    </th>
                    <td><ProgressBar score=p.share() label=format!("annotations of queue {key}")/>
                        <span class="muted">{format!("{} of {} annotations · {} items, {} flagged", p.annotations, p.needed, p.items, p.flagged)}</span></td>
                    <td>{q.answered_by_you}</td>
                    <td>{q.you_may_annotate.then(|| view! { <a class="button" href=format!("/annotate/{key}")>"Annotate"</a> })}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="queues">
            <thead><tr><th scope="col">"Queue"</th><th scope="col">"Progress"</th><th scope="col">"Yours"</th><th scope="col"></th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

/// The page that makes a queue's next version: the form filled from its current definition.
#[component]
pub fn EditQueuePage() -> impl IntoView {
    let params = use_params_map();
    let key = move || params.with(|p| p.get("key").unwrap_or_default());
    let data = Resource::new(key, |key| async move { load_queue_definition(key).await });
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(queue) => {
                        let title = format!("Edit queue: {}", queue.settings.name);
                        view! {
                            <Title text=title.clone()/>
                            <div class="page-head">
                                <div>
                                    <h1>{title}</h1>
                                    <p class="meta">{format!(
                                        "Loop {} · version {}: saving makes version {}; items sampled before keep the version they were sampled under",
                                        queue.loop_key, queue.version, queue.version + 1
                                    )}</p>
                                </div>
                                <a href=format!("/annotation-queues/{}", queue.key) class="link">"Back to the queue"</a>
                            </div>
                            <section class="panel"><QueueForm queue=Some(queue)/></section>
                        }
                        .into_any()
                    }
                }
            })}
        </Suspense>
    }
}

/// A queue's definition: empty to define a new queue, or filled from `queue` to make its next version
/// (its key and loop never change, so they are not fields then).
#[island]
fn QueueForm(queue: Option<AnnotationQueue>) -> impl IntoView {
    let action = ServerAction::<SaveAnnotationQueue>::new();
    let errors: FormErrors = RwSignal::new(FieldErrors::new());
    watch_outcome(action, errors);
    let submit = submit_with_checks(action, errors, |f: &SaveAnnotationQueue| queue_form(f).map(|_| ()));
    let editing = queue.is_some();
    let (version, input) = match &queue {
        Some(q) => (q.version.to_string(), q.settings.to_input(&q.key, &q.loop_key)),
        None => (
            String::new(),
            QueueInput {
                sampling: SamplingInput { policy: "random".into(), share: Some(0.1), ..Default::default() },
                labels: LabelSchema { correction: true, rating: true, ..Default::default() },
                annotators_per_item: Some(1),
                annotator_role: Some(true),
                lease_minutes: Some(10),
                ..Default::default()
            },
        ),
    };
    let number = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    let policies = ["random", "lowest-acceptance", "disagreement", "drift-window", "explicit"]
        .iter()
        .map(|p| (p.to_string(), p.to_string()))
        .collect::<Vec<_>>();
    let tasks = vec![
        ("correction".to_owned(), "Correct the suggestion".to_owned()),
        ("preference".to_owned(), "Prefer one of two suggestions (needs the loop's challenger)".to_owned()),
        ("none".to_owned(), "Neither (rating and tags only)".to_owned()),
    ];
    let task = if input.labels.correction {
        "correction"
    } else if input.labels.preference {
        "preference"
    } else {
        "none"
    };
    // A share is asked for as a percentage, as people say "a 10 % sample"; rounding keeps 0.03 at 3.
    let share = input.sampling.share.map(|s| format!("{}", (s * 1e6).round() / 1e4)).unwrap_or_default();
    // The key and the loop are fields of a new queue only; an edit sends them unchanged.
    let identity = if editing {
        view! {
            <input type="hidden" name="key" value=input.key.clone()/>
            <input type="hidden" name="loop_key" value=input.loop_key.clone()/>
            <Input label="Name" name="name" errors value=input.name.clone() required=true/>
        }
        .into_any()
    } else {
        view! {
            <Input label="Key" name="key" errors value="" required=true hint="Lower-case letters, digits and dashes; names it in the API."/>
            <Input label="Name" name="name" errors value="" required=true/>
            <Input label="Loop" name="loop_key" errors value="" required=true hint="The loop's key, such as notes."/>
        }
        .into_any()
    };
    // The fields are built in parts and their types erased, so that the form's view type stays small
    // enough for the compiler's layout queries.
    let sampling = view! {
        <div class="grid-2">
            {identity}
            <Select label="Sampling" name="policy" errors options=policies value=input.sampling.policy.clone()/>
            <Input label="Share (%)" name="share" kind="number" step="any" errors value=share hint="random and drift-window: the chance that an interaction enters."/>
            <Input label="Count" name="count" kind="number" errors value=number(input.sampling.count) hint="lowest-acceptance and disagreement: how many enter."/>
            <Input label="Limit" name="limit" kind="number" errors value=number(input.sampling.limit) hint="random and drift-window: the most one round adds (500 when empty)."/>
            <Input label="Seed" name="seed" kind="number" errors value=number(input.sampling.seed) hint="random and drift-window: which interactions the share picks (1 when empty)."/>
            <Input label="Window from" name="window_from" kind="date" errors value=input.sampling.from.clone()/>
            <Input label="Window to" name="window_to" kind="date" errors value=input.sampling.to.clone()/>
        </div>
        <TextArea label="Event ids" name="event_ids" errors value=input.sampling.event_ids.join("\n") hint="explicit: one event id per line."/>
    }
    .into_any();
    let labels = view! {
        <TextArea label="Guidelines (Markdown)" name="guidelines" errors value=input.guidelines.clone() rows=5/>
        <Select label="Task" name="task" errors options=tasks value=task/>
        <div class="field checks">
            <label><input type="checkbox" name="rating" value="on" checked=input.labels.rating/>" Rate 1–5"</label>
            <label><input type="checkbox" name="tags" value="on" checked=input.labels.tags/>" Tags"</label>
            <label><input type="checkbox" name="annotator_role" value="on" checked=input.annotator_role.unwrap_or(true)/>" Members with the annotator role annotate"</label>
        </div>
    }
    .into_any();
    let squads = input.squads.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let people = view! {
        <div class="grid-2">
            <Input label="Allowed tags" name="tag_set" errors value=input.labels.tag_set.join(", ") hint="Comma-separated; empty for free-form tags."/>
            <Input label="Annotators per item" name="annotators_per_item" kind="number" errors value=number(input.annotators_per_item) hint="2 or more measures agreement."/>
            <Input label="Squads that annotate" name="squads" errors value=squads hint="Comma-separated squad ids."/>
            <Input label="Lease (minutes)" name="lease_minutes" kind="number" errors value=number(input.lease_minutes)/>
        </div>
    }
    .into_any();
    view! {
        <form class="form" method="post" action=SaveAnnotationQueue::url() on:submit=submit novalidate>
            <FormMessages errors/>
            <input type="hidden" name="version" value=version/>
            {sampling}
            {labels}
            {people}
            <button type="submit" disabled=move || action.pending().get()>{if editing { "Save as a new version" } else { "Create queue" }}</button>
        </form>
    }
    .into_any()
}

// ---- an annotator's page -------------------------------------------------------------------------

#[component]
pub fn WorkPageView() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let key = move || params.with(|p| p.get("key").unwrap_or_default());
    let data = Resource::new(key, |key| async move { load_work_page(key).await });
    let refused = move || query.with(|q| q.get("refused"));
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(page) => {
                        let title = format!("Annotate: {}", page.queue_name);
                        view! {
                            <Title text=title.clone()/>
                            <div class="page-head">
                                <div>
                                    <h1>{title}</h1>
                                    <p class="meta">{format!("Loop {} · {}", page.loop_key, page.labels.describe())}</p>
                                </div>
                                <a href="/annotate" class="link">"All queues"</a>
                            </div>
                            <details class="guidelines" open=page.answered_by_you == 0>
                                <summary>"Guidelines"</summary>
                                {if page.guidelines.is_empty() {
                                    view! { <p class="prose muted">"None given."</p> }.into_any()
                                } else {
                                    // Rendered by the service from the operator's Markdown, with raw HTML
                                    // escaped and unsafe links removed, so it may be placed as HTML.
                                    view! { <div class="prose" data-testid="guidelines" inner_html=page.guidelines_html.clone()></div> }.into_any()
                                }}
                            </details>
                            <Annotator page refused=refused()/>
                        }
                        .into_any()
                    }
                }
            })}
        </Suspense>
    }
}

/// The keyboard shortcuts, as the page lists them and the island handles them.
const SHORTCUTS: [(&str, &str); 10] = [
    ("1 – 5", "rate"),
    ("A / B", "prefer suggestion A or B"),
    ("E", "edit the correction (Esc leaves the text)"),
    ("R", "reset the correction to the suggestion"),
    ("T", "edit the tags"),
    ("Enter", "save and go to the next item (Ctrl+Enter inside the text)"),
    ("S", "skip (someone else gets it)"),
    ("F", "flag for the operators (write why, then Enter)"),
    ("N", "edit the note"),
    ("?", "show or hide these shortcuts"),
];

/// The item the annotator holds, as a form that works without JavaScript (it posts and the page shows
/// the next item) and, once hydrated, answers in place: every action has a key, the correction's diff
/// to the suggestion is drawn as it is typed, and the next item replaces this one without a reload.
#[island]
fn Annotator(page: WorkPage, refused: Option<String>) -> impl IntoView {
    let labels = page.labels.clone();
    let queue = page.queue_key.clone();
    let item = RwSignal::new(page.item.clone());
    let progress = RwSignal::new(page.progress.clone());
    let answered = RwSignal::new(page.answered_by_you);
    let left = RwSignal::new(page.left_for_you);
    let session = RwSignal::new(0i64);
    let start_text = |i: &Option<WorkItem>| i.as_ref().and_then(|i| i.suggestion.clone()).unwrap_or_default();
    let correction = RwSignal::new(start_text(&page.item));
    let rating = RwSignal::new(None::<i64>);
    let preference = RwSignal::new(None::<Preferred>);
    let tags = RwSignal::new(String::new());
    let note = RwSignal::new(String::new());
    let help = RwSignal::new(true);
    let errors: FormErrors = RwSignal::new(match refused {
        Some(message) => FieldErrors::single("form", message),
        None => FieldErrors::new(),
    });
    let action = ServerAction::<SubmitAnnotation>::new();
    let reset = move |next: &Option<WorkItem>| {
        correction.set(start_text(next));
        rating.set(None);
        preference.set(None);
        tags.set(String::new());
        note.set(String::new());
    };
    Effect::new(move || match action.value().get() {
        Some(Ok(Answered::Saved(done))) => {
            errors.set(FieldErrors::new());
            progress.set(done.progress.clone());
            answered.set(done.answered_by_you);
            left.set(done.left_for_you);
            session.update(|n| *n += 1);
            reset(&done.next);
            item.set(done.next.clone());
        }
        Some(Ok(Answered::Invalid(found))) => errors.set(found),
        Some(Ok(Answered::Conflict(message))) => {
            errors.set(FieldErrors::single("form", format!("{message}. Reload the page for your next item.")))
        }
        Some(Err(e)) => errors.set(FieldErrors::single("form", e.to_string())),
        None => {}
    });
    let schema = labels.clone();
    let send = move |outcome: &str| {
        let Some(current) = item.get_untracked() else { return };
        let form = SubmitAnnotation {
            queue: current.queue.clone(),
            item_id: current.item_id.to_string(),
            outcome: Some(outcome.to_owned()),
            correction: schema.correction.then(|| correction.get_untracked()),
            preference: preference.get_untracked().map(|p| p.as_str().to_owned()),
            rating: rating.get_untracked().map(|r| r.to_string()),
            tags: Some(tags.get_untracked()),
            note: Some(note.get_untracked()),
        };
        // The browser checks what the server checks before anything is sent.
        let parsed =
            annotation_form(&form.outcome, &form.correction, &form.preference, &form.rating, &form.tags, &form.note)
                .and_then(|input| input.check(&schema, !current.options.is_empty()).map(|_| ()));
        match parsed {
            Ok(()) => {
                errors.set(FieldErrors::new());
                action.dispatch(form);
            }
            Err(found) => errors.set(found),
        }
    };
    let send_label = send.clone();
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        send_label("label");
    };
    let send_skip = send.clone();
    let send_flag = send.clone();
    #[cfg(feature = "hydrate")]
    {
        let send_key = send.clone();
        let handle = window_event_listener(leptos::ev::keydown, move |ev: leptos::ev::KeyboardEvent| {
            shortcut(&ev, &send_key, rating, preference, correction, help, note, item);
        });
        on_cleanup(move || handle.remove());
    }
    let suggestion = move || item.with(|i| i.as_ref().and_then(|i| i.suggestion.clone()).unwrap_or_default());
    let queue_share = move || progress.with(|p| p.share());
    let session_share = move || {
        let (done, more) = (session.get(), left.get());
        if done + more == 0 { 1.0 } else { done as f64 / (done + more) as f64 }
    };
    let with_rating = labels.rating;
    let with_tags = labels.tags;
    let with_correction = labels.correction;
    let tag_hint = if labels.tag_set.is_empty() {
        "Comma-separated.".to_owned()
    } else {
        format!("Comma-separated, from: {}", labels.tag_set.join(", "))
    };
    // The parts' types are erased, so that the island's view type stays small enough for the compiler.
    let progress_view = view! {
            <div class="annotator-progress">
                <div>
                    <span class="muted">"Queue"</span>
                    <div class="progress"><progress max="1" value=move || format!("{:.3}", queue_share()) aria-label="annotations the queue needs"></progress></div>
                    <span class="muted" data-testid="queue-progress">{move || progress.with(|p| format!("{} of {} annotations", p.annotations, p.needed))}</span>
                </div>
                <div>
                    <span class="muted">"This session"</span>
                    <div class="progress"><progress max="1" value=move || format!("{:.3}", session_share()) aria-label="items answered this session"></progress></div>
                    <span class="muted" data-testid="session-progress">{move || format!("{} done this session · {} left for you · {} in all", session.get(), left.get(), answered.get())}</span>
                </div>
            </div>
    }
    .into_any();
    let messages = view! {
            <div class="form-messages" role="alert" aria-live="polite">
                {move || errors.with(|e| e.0.iter().map(|(field, messages)| {
                    let text = if field == "form" { messages.join(" ") } else { format!("{field}: {}", messages.join("; ")) };
                    view! { <p class="error">{text}</p> }
                }).collect_view())}
            </div>
    }
    .into_any();
    let current_item = view! {
            {move || match item.get() {
                None => view! {
                    <p class="empty" data-testid="queue-done">"Nothing left for you in this queue. Thank you! "<a href="/annotate">"Other queues"</a></p>
                }.into_any(),
                Some(current) => view! {
                    <article class="work-item" data-testid="work-item" data-item=current.item_id.to_string()>
                        <p class="meta">{format!("Event {} · {} · the user kept {} of {} suggested characters", current.event_id, current.event_at.format("%Y-%m-%d %H:%M UTC"), current.accepted_chars, current.suggested_chars)}</p>
                        <h2 class="sr-only">"The interaction"</h2>
                        <div class="interaction">
                            <p><span class="label">"Context"</span><span class="context" data-testid="context">{current.context.clone()}</span></p>
                            {(!current.options.is_empty()).then(|| view! {
                                <div class="options" role="radiogroup" aria-label="The better suggestion">
                                    {current.options.iter().map(|o| {
                                        let choice = o.choice;
                                        view! {
                                            <label class="option" class:chosen=move || preference.get() == Some(choice)>
                                                <input type="radio" name="preference" form="annotation-form" value=choice.as_str()
                                                    prop:checked=move || preference.get() == Some(choice)
                                                    on:change=move |_| preference.set(Some(choice))/>
                                                <strong>{format!("{} ", o.label)}</strong><span class="suggestion">{o.text.clone()}</span>
                                            </label>
                                        }
                                    }).collect_view()}
                                </div>
                            })}
                            {current.options.is_empty().then(|| view! {
                                <p><span class="label">"Suggestion"</span><span class="suggestion" data-testid="suggestion">{current.suggestion.clone().unwrap_or_default()}</span></p>
                            })}
                            <p><span class="label">"What the user wrote"</span><span class="final">{current.final_text.clone().unwrap_or_else(|| "—".into())}</span></p>
                        </div>
                    </article>
                }.into_any(),
            }}
    }
    .into_any();
    let form = view! {
            <form id="annotation-form" class="form annotation-form" method="post" action=SubmitAnnotation::url() on:submit=on_submit>
                <input type="hidden" name="queue" value=queue.clone()/>
                <input type="hidden" name="item_id" value=move || item.with(|i| i.as_ref().map(|i| i.item_id.to_string()).unwrap_or_default())/>
                {with_correction.then(|| view! {
                    <div class="field">
                        <label for="correction">"Correction"</label>
                        <textarea id="correction" name="correction" rows="3" prop:value=move || correction.get()
                            on:input=move |ev| correction.set(event_target_value(&ev))>{correction.get_untracked()}</textarea>
                        <p class="diff" aria-label="Changes to the suggestion" data-testid="diff">
                            {move || diff(&suggestion(), &correction.get()).into_iter().map(|span| match span.kind {
                                DiffKind::Same => view! { <span>{span.text}</span> }.into_any(),
                                DiffKind::Removed => view! { <del>{span.text}</del> }.into_any(),
                                DiffKind::Added => view! { <ins>{span.text}</ins> }.into_any(),
                            }).collect_view()}
                        </p>
                    </div>
                })}
                {with_rating.then(|| view! {
                    <fieldset class="rating">
                        <legend>"Rating"</legend>
                        {(1..=5).map(|r| view! {
                            <label><input type="radio" name="rating" value=r.to_string()
                                prop:checked=move || rating.get() == Some(r)
                                on:change=move |_| rating.set(Some(r))/>{format!(" {r}")}</label>
                        }).collect_view()}
                    </fieldset>
                })}
                {with_tags.then(|| view! {
                    <div class="field">
                        <label for="tags">"Tags"</label>
                        <input id="tags" name="tags" prop:value=move || tags.get() on:input=move |ev| tags.set(event_target_value(&ev))/>
                        <p class="hint">{tag_hint.clone()}</p>
                    </div>
                })}
                <div class="field">
                    <label for="note">"Note"</label>
                    <input id="note" name="note" prop:value=move || note.get() on:input=move |ev| note.set(event_target_value(&ev))/>
                    <p class="hint">"Required when flagging: say what is wrong with the item."</p>
                </div>
                <div class="actions">
                    <button type="submit" name="outcome" value="label" disabled=move || action.pending().get() || item.with(Option::is_none)>"Save and next (Enter)"</button>
                    <button type="submit" name="outcome" value="skip" class="secondary" disabled=move || item.with(Option::is_none)
                        on:click=move |ev| { ev.prevent_default(); send_skip("skip"); }>"Skip (S)"</button>
                    <button type="submit" name="outcome" value="flag" class="danger" disabled=move || item.with(Option::is_none)
                        on:click=move |ev| { ev.prevent_default(); send_flag("flag"); }>"Flag (F)"</button>
                </div>
            </form>
    }
    .into_any();
    let shortcuts = view! {
            <section class="shortcuts" aria-labelledby="shortcuts-heading" class:hidden=move || !help.get()>
                <h2 id="shortcuts-heading">"Keyboard shortcuts"</h2>
                <dl>
                    {SHORTCUTS.iter().map(|(k, what)| view! { <dt><kbd>{*k}</kbd></dt><dd>{*what}</dd> }).collect_view()}
                </dl>
            </section>
    }
    .into_any();
    view! {
        <div class="annotator" data-testid="annotator">
            {progress_view}
            {messages}
            {current_item}
            {form}
            {shortcuts}
        </div>
    }
    .into_any()
}

/// One key press on the annotator's page. Letters act only outside text fields; inside one, Escape
/// leaves it and Ctrl+Enter saves.
#[cfg(feature = "hydrate")]
#[allow(clippy::too_many_arguments)]
fn shortcut(
    ev: &leptos::ev::KeyboardEvent,
    send: &impl Fn(&str),
    rating: RwSignal<Option<i64>>,
    preference: RwSignal<Option<Preferred>>,
    correction: RwSignal<String>,
    help: RwSignal<bool>,
    note: RwSignal<String>,
    item: RwSignal<Option<WorkItem>>,
) {
    use wasm_bindgen::JsCast;
    let focus = |id: &str| {
        if let Some(el) = document().get_element_by_id(id).and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok()) {
            let _ = el.focus();
        }
    };
    let active = document().active_element();
    let typing = active.as_ref().is_some_and(|e| {
        matches!(e.tag_name().as_str(), "TEXTAREA" | "INPUT") && e.get_attribute("type").as_deref() != Some("radio")
    });
    let key = ev.key();
    if typing {
        match key.as_str() {
            "Escape" => {
                if let Some(el) = active.and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok()) {
                    let _ = el.blur();
                }
            }
            "Enter" if ev.ctrl_key() || ev.meta_key() => {
                ev.prevent_default();
                let flagging =
                    active.as_ref().is_some_and(|e| e.id() == "note") && !note.get_untracked().trim().is_empty();
                send(if flagging { "flag" } else { "label" });
            }
            "Enter" if active.as_ref().is_some_and(|e| e.id() == "note") && !note.get_untracked().trim().is_empty() => {
                ev.prevent_default();
                send("flag");
            }
            _ => {}
        }
        return;
    }
    if ev.ctrl_key() || ev.meta_key() || ev.alt_key() {
        return;
    }
    let option = |label: &str| {
        item.with_untracked(|i| i.as_ref().and_then(|i| i.options.iter().find(|o| o.label == label).map(|o| o.choice)))
    };
    let handled = match key.as_str() {
        "1" | "2" | "3" | "4" | "5" => {
            rating.set(key.parse().ok());
            true
        }
        "a" | "A" | "b" | "B" => {
            if let Some(choice) = option(&key.to_uppercase()) {
                preference.set(Some(choice));
            }
            true
        }
        "e" | "E" => {
            focus("correction");
            true
        }
        "r" | "R" => {
            correction.set(item.with_untracked(|i| i.as_ref().and_then(|i| i.suggestion.clone()).unwrap_or_default()));
            true
        }
        "t" | "T" => {
            focus("tags");
            true
        }
        "n" | "N" | "f" | "F" if note.get_untracked().trim().is_empty() => {
            focus("note");
            true
        }
        "f" | "F" => {
            send("flag");
            true
        }
        "s" | "S" => {
            send("skip");
            true
        }
        "Enter" => {
            send("label");
            true
        }
        "?" => {
            help.update(|h| *h = !*h);
            true
        }
        _ => false,
    };
    if handled {
        ev.prevent_default();
    }
}

// ---- a queue's page ------------------------------------------------------------------------------

#[component]
pub fn QueuePageView() -> impl IntoView {
    let params = use_params_map();
    let key = move || params.with(|p| p.get("key").unwrap_or_default());
    let data = Resource::new(key, |key| async move { load_queue_page(key).await });
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(page) => view! { <QueueView page/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

fn estimate_text(e: &Option<Estimate>, format: fn(f64) -> String) -> String {
    match e {
        None => "—".to_owned(),
        Some(Estimate { value, low: Some(l), high: Some(h), items }) => {
            format!("{} ({} to {}; {items} items)", format(*value), format(*l), format(*h))
        }
        Some(Estimate { value, items, .. }) => {
            format!("{} ({items} item{})", format(*value), if *items == 1 { "" } else { "s" })
        }
    }
}

fn three(v: f64) -> String {
    format!("{v:.3}")
}

#[component]
fn QueueView(page: QueuePage) -> impl IntoView {
    let QueuePage { summary, guidelines_html: page_guidelines, versions, agreement, flagged, recent, per_day, gold } =
        page;
    let q = summary.queue.clone();
    let p = summary.progress.clone();
    let s = &q.settings;
    let operate = crate::may(slope_domain::Action::Operate);
    let title = format!("{} — annotation queue", s.name);
    let who = match (s.eligibility.annotator_role, s.eligibility.squads.is_empty()) {
        (true, true) => "members with the annotator role".to_owned(),
        (true, false) => format!(
            "members with the annotator role and squads {:?}",
            s.eligibility.squads.iter().map(|s| s.0).collect::<Vec<_>>()
        ),
        (false, _) => format!("squads {:?}", s.eligibility.squads.iter().map(|s| s.0).collect::<Vec<_>>()),
    };
    let mut total = 0i64;
    let cumulative: Vec<ChartPoint> = per_day
        .iter()
        .map(|(d, n)| {
            total += n;
            (*d, total as f64, None)
        })
        .collect();
    let annotators = agreement
        .annotators
        .iter()
        .map(|a| {
            view! {
                <tr>
                    <th scope="row">{a.annotator.clone()}</th>
                    <td>{a.labelled}</td><td>{a.skipped}</td><td>{a.flagged}</td>
                    <td>{a.median_seconds.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "—".into())}</td>
                    <td>{estimate_text(&a.preference_alpha, three)}</td>
                    <td>{estimate_text(&a.rating_alpha, three)}</td>
                    <td>{estimate_text(&a.correction_distance, three)}</td>
                    <td>{estimate_text(&a.gold, three)}</td>
                </tr>
            }
        })
        .collect_view();
    // Each part's type is erased, so that the page's view type stays small enough for the compiler.
    let head = view! {
        <Title text=title.clone()/>
        <div class="page-head">
            <div>
                <h1>{title}</h1>
                <p class="meta">{format!("Loop {} · version {} by {} · {}", q.loop_key, q.version, q.updated_by, s.labels.describe())}</p>
            </div>
            <a href="/annotate" class="link">"All queues"</a>
        </div>
        <section class="panel">
            <ProgressBar score=p.share() label="annotations the queue needs"/>
            <p class="muted" data-testid="queue-summary">{format!(
                "{} of {} annotations · {} items ({} open, {} done, {} flagged, {} in the gold set) · {} skips · {} held now",
                p.annotations, p.needed, p.items, p.open, p.done, p.flagged, p.gold, p.skips, p.leased
            )}</p>
            <dl class="facts">
                <dt>"Sampling"</dt><dd>{s.sampling.describe()}</dd>
                <dt>"Annotators per item"</dt><dd>{s.annotators_per_item}</dd>
                <dt>"Who annotates"</dt><dd>{format!("{who}, and the loop's operators")}</dd>
                <dt>"Lease"</dt><dd>{format!("{} minutes", s.lease_minutes)}</dd>
            </dl>
            <details><summary>"Guidelines"</summary><div class="prose" inner_html=page_guidelines></div></details>
            {summary.you_may_annotate.then(|| view! { <p><a class="button" href=format!("/annotate/{}", q.key)>"Annotate"</a></p> })}
        </section>
    }
    .into_any();
    let actions = operate.then(|| view! { <QueueActions key=q.key.clone()/> }.into_any());
    let volume = view! {
        <section aria-labelledby="volume-heading">
            <h2 id="volume-heading">"Annotations over time"</h2>
            <LineChart series=vec![ChartSeries { name: "labelled annotations (cumulative)".into(), points: cumulative }] title="Labelled annotations, cumulative" format=|v| format!("{v:.0}")/>
        </section>
    }
    .into_any();
    let agreement = view! {
        <section aria-labelledby="agreement-heading">
            <h2 id="agreement-heading">"Agreement"</h2>
            <dl class="facts" data-testid="agreement">
                <dt>"Items labelled by two or more"</dt><dd>{agreement.items_compared}</dd>
                <dt>"Preference (Krippendorff's α, nominal)"</dt><dd>{estimate_text(&agreement.preference_alpha, three)}</dd>
                <dt>"Rating (Krippendorff's α, ordinal)"</dt><dd>{estimate_text(&agreement.rating_alpha, three)}</dd>
                <dt>"Corrections (mean normalised edit distance)"</dt><dd>{estimate_text(&agreement.correction_distance, three)}</dd>
                <dt>"Gold items"</dt><dd>{agreement.gold_items}</dd>
            </dl>
            <table class="compact annotators">
                <caption>"Annotators: their work and quality, with 95 % intervals"</caption>
                <thead><tr>
                    <th scope="col">"Annotator"</th><th scope="col">"Labelled"</th><th scope="col">"Skipped"</th><th scope="col">"Flagged"</th>
                    <th scope="col">"Median time"</th><th scope="col">"Preference α"</th><th scope="col">"Rating α"</th>
                    <th scope="col">"Correction distance"</th><th scope="col">"Gold score"</th>
                </tr></thead>
                <tbody>{annotators}</tbody>
            </table>
            <p class="hint">{agreement.method.clone()}</p>
        </section>
    }
    .into_any();
    let flagged = view! {
        <section aria-labelledby="flagged-heading">
            <h2 id="flagged-heading">{format!("Flagged items ({})", flagged.len())}</h2>
            {if flagged.is_empty() {
                view! { <p class="empty">"None."</p> }.into_any()
            } else {
                view! { <ul class="flagged">{flagged.into_iter().map(|f| view! {
                    <li><strong>{f.note.clone()}</strong>{format!(" — {} on event {} ({})", f.annotator, f.item.event_id, f.at.format("%Y-%m-%d %H:%M UTC"))}
                        <div class="muted">{format!("{}{}", f.item.context, f.item.suggestion.clone().unwrap_or_default())}</div></li>
                }).collect_view()}</ul> }.into_any()
            }}
        </section>
    }
    .into_any();
    let recent = view! {
        <section aria-labelledby="recent-heading">
            <h2 id="recent-heading">"Newest annotations"</h2>
            <table class="compact recent">
                <thead><tr><th scope="col">"When"</th><th scope="col">"Annotator"</th><th scope="col">"Event"</th><th scope="col">"Labels"</th></tr></thead>
                <tbody>{recent.into_iter().map(|a| view! {
                    <tr>
                        <td>{a.created_at.format("%Y-%m-%d %H:%M").to_string()}</td>
                        <td>{a.annotator.clone()}</td>
                        <td>{a.event_id.clone()}</td>
                        <td>{labels_text(&a.labels)}</td>
                    </tr>
                }).collect_view()}</tbody>
            </table>
        </section>
    }
    .into_any();
    let rest = view! {
        <section aria-labelledby="gold-heading">
            <h2 id="gold-heading">{format!("Gold set ({} items)", gold.len())}</h2>
            <p class="hint">"Items with a known answer, set by operators through "<code>"PUT /api/v1/annotation-queues/{key}/items/{id}/gold"</code>"; annotators see them like any other item and are scored against them."</p>
            <ul>{gold.into_iter().map(|g| view! { <li>{format!("event {}: {}", g.event_id, g.gold.as_ref().map(labels_text).unwrap_or_default())}</li> }).collect_view()}</ul>
        </section>
        <section aria-labelledby="versions-heading">
            <h2 id="versions-heading">"Versions"</h2>
            <ol class="versions">{versions.into_iter().map(|v| view! {
                <li>{format!("v{} by {} on {}: {}; {} per item; {}", v.version, v.created_by, v.created_at.format("%Y-%m-%d %H:%M UTC"), v.settings.sampling.describe(), v.settings.annotators_per_item, v.settings.labels.describe())}</li>
            }).collect_view()}</ol>
        </section>
    }
    .into_any();
    view! { {head} {actions} {volume} {agreement} {flagged} {recent} {rest} }.into_any()
}

fn labels_text(l: &Labels) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &l.correction {
        parts.push(format!("correction “{c}”"));
    }
    if let Some(p) = l.preference {
        parts.push(format!("prefers the {p}"));
    }
    if let Some(r) = l.rating {
        parts.push(format!("rating {r}"));
    }
    if !l.tags.is_empty() {
        parts.push(format!("tags {}", l.tags.join(", ")));
    }
    parts.join(" · ")
}

/// An operator's actions on a queue: sample more, export, and fine-tune the loop's champion on the
/// annotations (the job's page follows it live).
#[island]
fn QueueActions(key: String) -> impl IntoView {
    let sample = ServerAction::<SampleQueue>::new();
    let sample_errors: FormErrors = RwSignal::new(FieldErrors::new());
    watch_outcome(sample, sample_errors);
    let submit_sample = submit_with_checks(sample, sample_errors, |_| Ok(()));
    let tune = ServerAction::<FineTuneOnAnnotations>::new();
    let tune_errors: FormErrors = RwSignal::new(FieldErrors::new());
    watch_outcome(tune, tune_errors);
    let submit_tune = submit_with_checks(tune, tune_errors, |f: &FineTuneOnAnnotations| {
        f.steps.trim().parse::<usize>().map(|_| ()).map_err(|_| FieldErrors::single("steps", "must be a whole number"))
    });
    let bases = vec![
        ("both".to_owned(), "The loop's events, annotated ones from their annotations".to_owned()),
        ("annotations".to_owned(), "The annotations alone".to_owned()),
    ];
    view! {
        <section class="panel queue-actions" aria-labelledby="actions-heading">
            <h2 id="actions-heading">"Operate"</h2>
            <form class="form inline" method="post" action=SampleQueue::url() on:submit=submit_sample>
                <FormMessages errors=sample_errors/>
                <input type="hidden" name="key" value=key.clone()/>
                <button type="submit" disabled=move || sample.pending().get()>"Sample more interactions"</button>
            </form>
            <p>
                <a href=format!("/annotation-queues/{key}/edit")>"Edit the queue (a new version)"</a>
                " · "
                <a href=format!("/api/v1/annotation-queues/{key}/export") download=format!("{key}.jsonl")>"Export the annotations (JSONL)"</a>
            </p>
            <form class="form" method="post" action=FineTuneOnAnnotations::url() on:submit=submit_tune>
                <FormMessages errors=tune_errors/>
                <input type="hidden" name="key" value=key.clone()/>
                <Select label="Train on" name="from" errors=tune_errors options=bases value="both"/>
                <Input label="Steps" name="steps" kind="number" errors=tune_errors value="200"/>
                <button type="submit" disabled=move || tune.pending().get()>"Build datasets and fine-tune the champion"</button>
            </form>
        </section>
    }
}

// ---- the annotation budget -----------------------------------------------------------------------

/// A weekly annotation rate with its interval, as the budget's sentence and its goals' table both say it;
/// `None` when there is no rate (no date ahead to reach the target by).
fn weekly_rate(per_week: Option<f64>, low: Option<f64>, high: Option<f64>) -> Option<String> {
    let (w, l) = (per_week?, low?);
    let high = high.map_or("unbounded".to_owned(), |h| format!("{h:.0}"));
    Some(format!("about {w:.0} annotations a week ({l:.0} to {high})"))
}

/// A key result's (or loop metric's) annotation budget: the estimate in a sentence, the learning curve
/// it comes from, or why there is none yet.
#[component]
pub fn BudgetPanel(budget: AnnotationBudget, #[prop(optional, into)] heading: Option<String>) -> impl IntoView {
    let heading = heading.unwrap_or_else(|| "Annotation budget".to_owned());
    let sentence = match (&budget.estimate, &budget.why_not) {
        (_, Some(why)) => why.clone(),
        (Some(_), None) if budget.reached => format!(
            "The latest promoted model meets the target ({}) already: no further annotations are needed for it.",
            share_text(budget.target)
        ),
        (Some(e), None) => {
            let high = e.more_high.map_or("an unbounded number".to_owned(), |h| format!("{h:.0}"));
            let rate = match (weekly_rate(e.per_week, e.per_week_low, e.per_week_high), budget.by) {
                (Some(rate), Some(by)) => format!(" To reach it by {by}: {rate}."),
                _ => String::new(),
            };
            format!(
                "About {:.0} more expert annotations to reach {} (80 % interval {:.0} to {high}), beyond the {} given so far.{rate}",
                e.more,
                share_text(budget.target),
                e.more_low,
                budget.annotations_so_far
            )
        }
        (None, None) => String::new(),
    };
    let rate = |r: &GoalRate| weekly_rate(r.per_week, r.per_week_low, r.per_week_high).unwrap_or_else(|| "—".into());
    let goals = (!budget.goals.is_empty()).then(|| {
        let rows = budget
            .goals
            .iter()
            .map(|r| {
                view! {
                    <tr>
                        <th scope="row"><a href=format!("/squad-goals/{}", r.goal_id)>{r.title.clone()}</a></th>
                        <td>{r.squad.clone()}</td>
                        <td>{r.ends_on.to_string()}</td>
                        <td>{rate(r)}</td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <table class="goal-rates">
                <caption>"The rate each squad goal laddering up to it needs, to annotate the rest by the goal's end"</caption>
                <thead><tr><th scope="col">"Squad goal"</th><th scope="col">"Squad"</th><th scope="col">"Ends"</th><th scope="col">"Annotations needed"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        }
    });
    view! {
        <section class="panel budget" aria-labelledby="budget-heading" data-testid="annotation-budget">
            <h2 id="budget-heading">{heading}</h2>
            <p class="budget-sentence"><strong>{sentence}</strong></p>
            {goals}
            <LearningCurve budget=budget.clone()/>
            <p class="hint">{budget.method.clone()}</p>
        </section>
    }
}

/// The learning curve as SVG: each promoted iteration's acceptance against the annotations it used (on a
/// logarithmic axis), the fitted curve, and the target.
#[component]
fn LearningCurve(budget: AnnotationBudget) -> impl IntoView {
    const W: f64 = 560.0;
    const H: f64 = 200.0;
    const PAD: f64 = 40.0;
    let points: Vec<CurvePoint> = budget.points.iter().filter(|p| p.annotations > 0).cloned().collect();
    if points.is_empty() {
        return view! { <p class="empty">"No promoted iteration was trained on annotations yet, so there is no curve to show."</p> }.into_any();
    }
    let needed = budget.estimate.as_ref().map(|e| e.total).filter(|t| t.is_finite());
    let most = points.iter().map(|p| p.annotations as f64).fold(1.0, f64::max).max(needed.unwrap_or(1.0)) * 1.2;
    let least = points.iter().map(|p| p.annotations as f64).fold(f64::INFINITY, f64::min).max(1.0) / 1.2;
    let (lx0, lx1) = (least.ln(), most.ln().max(least.ln() + 1e-6));
    let x = move |n: f64| PAD + (n.max(1.0).ln() - lx0) / (lx1 - lx0) * (W - 1.5 * PAD);
    let values = points.iter().map(|p| p.value).chain([budget.target]);
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    let pad = ((hi - lo) * 0.1).max(0.02);
    let (lo, hi) = ((lo - pad).max(0.0), (hi + pad).min(1.0));
    let y = move |v: f64| H - PAD / 2.0 - (v - lo) / (hi - lo).max(1e-9) * (H - PAD);
    let curve = budget.fit.as_ref().map(|fit| {
        (0..=40)
            .map(|i| (lx0 + (lx1 - lx0) * i as f64 / 40.0).exp())
            .map(|n| (x(n), y(fit.value_at(n).clamp(lo, hi))))
            .enumerate()
            .map(|(i, (px, py))| format!("{}{px:.1},{py:.1}", if i == 0 { "M" } else { " L" }))
            .collect::<String>()
    });
    let desc = points
        .iter()
        .map(|p| format!("{} after {} annotations: {}", p.model, p.annotations, share_text(p.value)))
        .collect::<Vec<_>>()
        .join("; ");
    view! {
        <ChartHover>
        <figure class="chart learning-curve">
            <svg viewBox=format!("0 0 {W} {H}") role="img" preserveAspectRatio="xMidYMid meet">
                <title>"Learning curve: acceptance of each promoted model against the annotations it used"</title>
                <desc>{desc}</desc>
                <line class="ref target" x1=PAD x2=W - PAD / 2.0 y1=y(budget.target) y2=y(budget.target)></line>
                <text class="ref-label" x=W - PAD / 2.0 y=y(budget.target) - 4.0 text-anchor="end">{format!("target {}", share_text(budget.target))}</text>
                {curve.map(|d| view! { <path class="series s1 fit" d=d></path> })}
                {needed.map(|n| view! { <line class="ref needed" x1=x(n) x2=x(n) y1=PAD / 2.0 y2=H - PAD / 2.0><title>{format!("target reached at about {n:.0} annotations")}</title></line> })}
                {points.iter().map(|p| {
                    let tip = format!("{}: {} after {} annotations", p.model, share_text(p.value), p.annotations);
                    let title = tip.clone();
                    view! { <circle class="point s0" cx=x(p.annotations as f64) cy=y(p.value) r="4" tabindex="0" data-tip=tip><title>{title}</title></circle> }
                }).collect_view()}
                <text class="axis" x=PAD y=H - 2.0>{format!("{least:.0} annotations")}</text>
                <text class="axis" x=W - PAD / 2.0 y=H - 2.0 text-anchor="end">{format!("{most:.0} (log scale)")}</text>
                <text class="axis" x=2.0 y=y(hi) + 10.0>{share_text(hi)}</text>
                <text class="axis" x=2.0 y=y(lo) - 2.0>{share_text(lo)}</text>
            </svg>
        </figure>
        </ChartHover>
    }
    .into_any()
}

/// The annotation budget of a key result, loaded on its own so that the key result's page does not wait
/// for the learning curve.
#[component]
pub fn KeyResultBudget(id: i64) -> impl IntoView {
    let data = Resource::new(move || id, |id| async move { load_key_result_budget(id).await });
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(budget)) => view! { <BudgetPanel budget/> }.into_any(),
                    _ => ().into_any(),
                }
            })}
        </Suspense>
    }
}

/// The annotation budgets of the key results a loop's acceptance metrics feed, for the loop's page.
#[component]
pub fn LoopBudgets(loop_key: String) -> impl IntoView {
    let data = Resource::new(move || loop_key.clone(), |key| async move { load_loop_budget(key).await });
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(b) => b.key_results.into_iter().map(|kr| {
                        let heading = format!("Annotation budget: {}", kr.title);
                        view! { <BudgetPanel budget=kr.budget heading/> }
                    }).collect_view().into_any(),
                    Err(_) => ().into_any(),
                }
            })}
        </Suspense>
    }
}
