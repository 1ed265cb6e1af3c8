//! The dashboard's HTML, rendered on the server with `maud` (every value
//! escaped). No inline script or style: the Content-Security-Policy allows
//! only the engine's own `/ui/assets/` files.

use maud::{DOCTYPE, Markup, html};

use crate::job::{JobRecord, JobState};
use crate::supervisor::ServiceStatus;
use crate::token::Scope;

/// What every page's frame needs.
pub struct Frame<'a> {
    /// Who is logged in (the token's id).
    pub token: &'a str,
    /// What they may do.
    pub scope: Scope,
    /// The session's form token.
    pub csrf: &'a str,
}

/// A whole page: head, header with navigation (when logged in), `body`.
pub(crate) fn page(title: &str, frame: Option<&Frame<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Slipway" }
                link rel="stylesheet" href="/ui/assets/app.css";
                script src="/ui/assets/app.js" defer {}
            }
            body {
                header {
                    a.brand href="/ui/" { "Slipway" }
                    @if let Some(f) = frame {
                        nav {
                            a href="/ui/" { "Overview" }
                            a href="/ui/jobs" { "Jobs" }
                            a href="/ui/services" { "Services" }
                            a href="/ui/workspaces" { "Workspaces" }
                            a href="/ui/plugins" { "Plugins" }
                            a href="/ui/deployments" { "Deployments" }
                            a href="/ui/watches" { "Watches" }
                        }
                        form.logout method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(f.csrf);
                            span.who { (f.token) " (" (f.scope.name()) ")" }
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The login form; `error` says why the last try failed.
pub fn login(error: Option<&str>) -> Markup {
    page(
        "Log in",
        None,
        html! {
            h1 { "Log in" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form #login method="post" action="/ui/login" {
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="current-password" required;
                button type="submit" { "Log in" }
            }
            p.hint { "A token from the engine's token file, SLIPWAY_TOKEN, or `slipway tokens create`. It stays on the server: the browser gets a session cookie." }
        },
    )
}

/// What the overview shows.
pub struct Overview<'a> {
    /// Jobs by state.
    pub counts: Vec<(JobState, u64)>,
    /// The newest running jobs.
    pub running: &'a [JobRecord],
    /// Managed services and their health.
    pub services: &'a [ServiceStatus],
    /// Open workspaces.
    pub workspaces_open: usize,
    /// Deployments, with their sync and health.
    pub deployments: &'a [crate::deployments::Deployment],
    /// Watches declared.
    pub watches: usize,
    /// The queue as sampled, oldest first, ending with now.
    pub queue: &'a [super::state::QueueSample],
    /// The attempt-duration histogram of the engine's metrics: (upper
    /// bound in seconds, cumulative count), then `+Inf`'s count.
    pub durations: &'a (Vec<(f64, u64)>, u64),
    /// The engine's version and container host.
    pub version: &'a str,
}

/// The overview: queue, running jobs, services, workspaces, the engine.
pub fn overview(frame: &Frame<'_>, o: &Overview<'_>) -> Markup {
    page(
        "Overview",
        Some(frame),
        html! {
            h1 { "Overview" }
            section.cards {
                @for (state, n) in &o.counts {
                    a.card href={ "/ui/jobs?state=" (state.name()) } {
                        span.count { (n) }
                        span.label { (state.name()) }
                    }
                }
                a.card href="/ui/workspaces" { span.count { (o.workspaces_open) } span.label { "open workspaces" } }
                a.card href="/ui/deployments" { span.count { (o.deployments.len()) } span.label { "deployments" } }
                a.card href="/ui/watches" { span.count { (o.watches) } span.label { "watches" } }
            }
            section.charts {
                figure #queue-chart {
                    figcaption { "Queue depth (waiting, running)" }
                    (super::charts::queue(o.queue))
                }
                figure #duration-chart {
                    figcaption { "Job attempt durations" }
                    (super::charts::durations(&o.durations.0, o.durations.1))
                }
            }
            h2 { "Running" }
            (job_table(o.running))
            h2 { "Managed services" }
            (service_table(o.services))
            @if !o.deployments.is_empty() {
                h2 { "Deployments" }
                (super::views::deployment_table(o.deployments))
            }
            p.engine { "Engine " (o.version) }
        },
    )
}

/// The job list, with its state filter.
pub fn jobs(frame: &Frame<'_>, jobs: &[JobRecord], state: Option<JobState>) -> Markup {
    page(
        "Jobs",
        Some(frame),
        html! {
            h1 { "Jobs" }
            nav.filters {
                a href="/ui/jobs" class=[state.is_none().then_some("on")] { "all" }
                @for s in JobState::ALL {
                    a href={ "/ui/jobs?state=" (s.name()) } class=[(state == Some(s)).then_some("on")] { (s.name()) }
                }
            }
            // Refreshed in place while a job on it is not final.
            div #jobs data-refresh=[jobs.iter().any(|j| !j.state.is_final()).then_some("2000")] {
                (job_table(jobs))
            }
        },
    )
}

fn job_table(jobs: &[JobRecord]) -> Markup {
    html! {
        @if jobs.is_empty() {
            p.empty { "None." }
        } @else {
            table.jobs {
                thead { tr { th { "Job" } th { "State" } th { "Repository" } th { "Commit" } th { "Tier" } th { "Took" } } }
                tbody {
                    @for j in jobs {
                        tr {
                            td { a href={ "/ui/jobs/" (j.id) } { "#" (j.id) } }
                            td { span class={ "state " (j.state.name()) } { (j.state.name()) } }
                            td.repo { (j.spec.repository) }
                            td.mono { (short_commit(j)) }
                            td { (j.spec.tier.name()) }
                            td { (took(j)) }
                        }
                    }
                }
            }
        }
    }
}

/// Managed services: name (to its page), state, restarts, last reason.
pub(crate) fn service_table(services: &[ServiceStatus]) -> Markup {
    html! {
        @if services.is_empty() {
            p.empty { "None." }
        } @else {
            table {
                thead { tr { th { "Service" } th { "State" } th { "Restarts" } th { "Reason" } } }
                tbody {
                    @for s in services {
                        tr {
                            td { a href={ "/ui/services/" (s.name) } { (s.name) } }
                            td { span class={ "state " (s.state.name()) } { (s.state.name()) } }
                            td.restarts { (s.restarts) }
                            td { (s.reason.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

pub(crate) fn short_commit(j: &JobRecord) -> String {
    let sha = j
        .run
        .as_ref()
        .and_then(|r| r.sha.clone())
        .unwrap_or_else(|| j.spec.commit.clone());
    sha.chars().take(12).collect()
}

fn took(j: &JobRecord) -> String {
    match j.events.last() {
        Some(e) if j.state.is_final() => {
            crate::logs::human_duration(e.at_ms.saturating_sub(j.created_ms))
        }
        _ => String::new(),
    }
}

/// One log line as the job page shows it.
pub struct LogLine {
    /// Time since the job was submitted, as a person reads it.
    pub elapsed: String,
    /// `slipway`, `stdout`, `stderr`, `build` or `service/<name>`.
    pub stream: String,
    /// The text.
    pub text: String,
}

/// A part of a job's log that folds: what came before the steps, one
/// step, or what came after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSection {
    /// The step's name, or `preparing` / `engine` / `log`.
    pub title: String,
    /// `ok`, `exit <n>` or `stopped` for a step.
    pub result: Option<String>,
    /// The step failed (or was stopped).
    pub failed: bool,
    /// Shown unfolded.
    pub open: bool,
    /// How long the step took.
    pub took_ms: Option<u64>,
    /// Its lines, as indexes into the page's lines.
    pub lines: std::ops::Range<usize>,
}

impl LogSection {
    /// A section that is not a step, folded when `fold_if_long` and it is
    /// longer than a screen.
    pub fn plain(title: &str, lines: std::ops::Range<usize>, fold_if_long: bool) -> LogSection {
        LogSection {
            title: title.to_owned(),
            result: None,
            failed: false,
            open: !(fold_if_long && lines.len() > 20),
            took_ms: None,
            lines,
        }
    }
}

/// A job: spec, commit, image, timeline, steps, findings, log, actions.
pub fn job(
    frame: &Frame<'_>,
    j: &JobRecord,
    log: &[LogLine],
    log_end: u64,
    step_lines: &[usize],
    sections: &[LogSection],
) -> Markup {
    let run = j.run.as_ref();
    let live = !j.state.is_final();
    page(
        &format!("Job #{}", j.id),
        Some(frame),
        html! {
            h1 { "Job #" (j.id) " " span #state class={ "state " (j.state.name()) } { (j.state.name()) } }
            @if let Some(reason) = &j.reason { p.reason { (reason) } }
            @if frame.scope >= Scope::Run {
                div.actions {
                    @if live {
                        form method="post" action={ "/ui/jobs/" (j.id) "/cancel" } {
                            input type="hidden" name="csrf" value=(frame.csrf);
                            button #cancel type="submit" { "Cancel" }
                        }
                    } @else {
                        form method="post" action={ "/ui/jobs/" (j.id) "/retry" } {
                            input type="hidden" name="csrf" value=(frame.csrf);
                            button #retry type="submit" title="Submit the same spec (same commit) as a new job" { "Retry" }
                        }
                    }
                }
            }
            dl.facts {
                dt { "Repository" } dd { (j.spec.repository) }
                dt { "Commit" } dd.mono { (run.and_then(|r| r.sha.as_deref()).unwrap_or(&j.spec.commit)) }
                dt { "Tier" } dd { (j.spec.tier.name()) }
                @if let Some(p) = &j.spec.profile { dt { "Profile" } dd { (p) } }
                @if let Some(image) = run.and_then(|r| r.image.as_ref()) {
                    dt { "Image" } dd.mono { (image.tag) " " span.hint { @if image.cache_hit { "(cache hit)" } @else { "(built in " (crate::logs::human_duration(image.build_ms)) ")" } } }
                }
                @if let Some(r) = run { @if !r.plugins.is_empty() { dt { "Plugins" } dd.mono { (r.plugins.join(", ")) } } }
                dt { "Attempt" } dd { (j.attempt) " of " (j.max_attempts) }
            }
            @if let Some(r) = run {
                h2 { "Timeline" }
                (timeline(r))
                @if !r.steps.is_empty() {
                    h2 { "Steps" }
                    table.steps {
                        thead { tr { th { "Step" } th { "Result" } th { "Took" } th { "Command" } } }
                        tbody {
                            @for (i, s) in r.steps.iter().enumerate() {
                                @let failed = s.exit_code != Some(0);
                                tr class=[failed.then_some("failed")] {
                                    td { a.step href={ "#L" (step_lines.get(i).copied().unwrap_or(1)) } { (s.name) } }
                                    td { @match s.exit_code { Some(0) => "ok", Some(c) => { "exit " (c) }, None => "stopped" } }
                                    td { (crate::logs::human_duration(s.duration_ms)) }
                                    td.mono { (s.command) }
                                }
                            }
                        }
                    }
                }
                @if !r.plan.is_empty() {
                    h2 { "Plan" }
                    table.plan {
                        thead { tr { th { "Decided" } th { "As" } th { "From" } } }
                        tbody {
                            @for fact in &r.plan {
                                tr {
                                    td { (fact.what) }
                                    td.mono { (fact.value) }
                                    td.mono {
                                        (fact.source.as_deref().unwrap_or("default"))
                                        @if let Some(note) = &fact.note { " " span.hint { (note) } }
                                    }
                                }
                            }
                        }
                    }
                }
                @let findings: Vec<_> = r.steps.iter().flat_map(|s| s.findings.iter().map(move |f| (s, f))).collect();
                @if !findings.is_empty() {
                    h2 { "Findings" }
                    table.findings {
                        thead { tr { th { "Where" } th { "Severity" } th { "Message" } th { "Step" } } }
                        tbody {
                            @for (s, f) in findings {
                                tr {
                                    @let place = html! { (f.file.as_deref().unwrap_or("-")) @if let Some(l) = f.line { ":" (l) } @if let Some(c) = f.column { ":" (c) } };
                                    @let link = f.file.as_deref().zip(r.sha.as_deref()).and_then(|(file, sha)| {
                                        super::links::source_line(&j.spec.repository, sha, j.spec.forge.as_ref().map(|fg| fg.kind), file, f.line)
                                    });
                                    td.mono { @if let Some(href) = link { a href=(href) rel="noreferrer" { (place) } } @else { (place) } }
                                    td { span class={ "severity " (f.severity) } { (f.severity) } }
                                    td { (f.message) @if let Some(rule) = &f.rule { " " span.hint { "[" (rule) "]" } } }
                                    td { (s.name) }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Log" }
            div #log.log data-job=(j.id) data-follow=[live.then_some("1")] data-start=(j.created_ms) data-offset=(log_end) {
                @for section in sections {
                    details class={ "fold" @if section.failed { " failed" } } open[section.open] {
                        summary {
                            span.name { (section.title) }
                            @if let Some(r) = &section.result { " " span.result { (r) } }
                            @if let Some(ms) = section.took_ms { " " span.hint { (crate::logs::human_duration(ms)) } }
                            " " span.hint { (section.lines.len()) @if section.lines.len() == 1 { " line" } @else { " lines" } }
                        }
                        @for i in section.lines.clone() {
                            @if let Some(l) = log.get(i) { (log_line(i, l)) }
                        }
                    }
                }
            }
        },
    )
}

fn log_line(i: usize, l: &LogLine) -> Markup {
    html! {
        span id={ "L" (i + 1) } class={ "line " (stream_class(&l.stream)) } {
            span.t { (l.elapsed) } " " span.s { (l.stream) } " "
            @for run in super::ansi::runs(&l.text) {
                @if run.class.is_empty() { (run.text) } @else { span class=(run.class) { (run.text) } }
            }
            "\n"
        }
    }
}

fn stream_class(stream: &str) -> &'static str {
    match stream {
        "slipway" => "engine",
        "stderr" => "stderr",
        "build" => "build",
        "stdout" => "stdout",
        _ => "service",
    }
}

/// The attempt's phases and steps as bars, drawn to scale.
fn timeline(r: &crate::job::RunRecord) -> Markup {
    let phases: Vec<(&str, u64)> = ["checkout", "plan", "image", "services", "steps", "cleanup"]
        .iter()
        .filter_map(|p| r.phases_ms.get(*p).map(|ms| (*p, *ms)))
        .collect();
    let total: u64 = phases.iter().map(|(_, ms)| ms).sum::<u64>().max(1);
    let width = 800.0;
    let scale = |ms: u64| ms as f64 / total as f64 * width;
    let mut x = 0.0;
    let mut bars = Vec::new();
    for (name, ms) in &phases {
        bars.push((name.to_string(), x, scale(*ms).max(1.0), *ms, "phase"));
        x += scale(*ms);
    }
    // Steps inside the `steps` phase, in order.
    let steps_start: f64 = phases
        .iter()
        .take_while(|(n, _)| *n != "steps")
        .map(|(_, ms)| scale(*ms))
        .sum();
    let mut sx = steps_start;
    let step_bars: Vec<_> = r
        .steps
        .iter()
        .map(|s| {
            let w = scale(s.duration_ms).max(1.0);
            let bar = (
                s.name.clone(),
                sx,
                w,
                s.duration_ms,
                if s.exit_code == Some(0) {
                    "ok"
                } else {
                    "failed"
                },
            );
            sx += w;
            bar
        })
        .collect();
    html! {
        svg.timeline viewBox="0 0 800 64" width="100%" role="img" aria-label="Timeline of the attempt" {
            @for (name, x, w, ms, class) in &bars {
                g class=(class) {
                    rect x=(format!("{x:.1}")) y="4" width=(format!("{w:.1}")) height="24" {}
                    title { (name) " " (crate::logs::human_duration(*ms)) }
                    text x=(format!("{:.1}", x + 3.0)) y="20" { (name) }
                }
            }
            @for (name, x, w, ms, class) in &step_bars {
                g class={ "step " (class) } {
                    rect x=(format!("{x:.1}")) y="34" width=(format!("{w:.1}")) height="24" {}
                    title { (name) " " (crate::logs::human_duration(*ms)) }
                    text x=(format!("{:.1}", x + 3.0)) y="50" { (name) }
                }
            }
        }
        p.legend { @for (name, _, _, ms, _) in &bars { span { (name) " " (crate::logs::human_duration(*ms)) } } }
    }
}

/// A page that only says something (e.g. a refused form).
pub fn message(title: &str, text: &str) -> Markup {
    page(
        title,
        None,
        html! { h1 { (title) } p { (text) } p { a href="/ui" { "Back" } } },
    )
}

/// The stylesheet (served from `/ui/static/app.css`).
pub const CSS: &str = include_str!("static/app.css");
/// The script (served from `/ui/static/app.js`).
pub const JS: &str = include_str!("static/app.js");
