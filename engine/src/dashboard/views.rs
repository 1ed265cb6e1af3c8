//! The dashboard's pages about what is not a job: a managed service with
//! its restarts and log, workspaces with their validate history and
//! findings, plugins with their status, deployments and watches.

use maud::{Markup, html};

use super::pages::{Frame, page};
use crate::deployments::Deployment;
use crate::job::FindingView;
use crate::supervisor::ServiceStatus;
use crate::token::Scope;
use crate::watches::record::{Delivery, Watch};
use crate::workspace::WorkspaceRecord;

/// An enum's name as the API spells it (its serde name).
pub(crate) fn name_of<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Unix ms as `YYYY-MM-DD HH:MM:SS` UTC.
pub(crate) fn clock(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn short(sha: &str) -> String {
    sha.chars().take(12).collect()
}

/// One managed service: state, restarts, last failure, its log (the page
/// refreshes the part that changes while it is open).
pub fn service(
    frame: &Frame<'_>,
    spec: &crate::service::ManagedServiceSpec,
    status: Option<&ServiceStatus>,
    log: &str,
) -> Markup {
    page(
        &format!("Service {}", spec.name),
        Some(frame),
        html! {
            h1 { "Service " (spec.name) }
            @if frame.scope >= Scope::Admin {
                div.actions {
                    form method="post" action={ "/ui/services/" (spec.name) "/restart" } {
                        input type="hidden" name="csrf" value=(frame.csrf);
                        button #restart type="submit" { "Restart" }
                    }
                }
            }
            div #service data-refresh="2000" {
                dl.facts {
                    dt { "State" }
                    dd { @match status {
                        Some(s) => { span #state class={ "state " (s.state.name()) } { (s.state.name()) } " " span.hint { "since " (clock(s.since_ms)) } },
                        None => { span #state.state { "not picked up yet" } },
                    } }
                    dt { "Restarts" } dd #restarts { (status.map_or(0, |s| s.restarts)) }
                    dt { "Last failure" } dd #reason { (status.and_then(|s| s.reason.as_deref()).unwrap_or("-")) }
                    dt { "Container" } dd.mono { (status.and_then(|s| s.container.as_deref()).map(short).unwrap_or_else(|| "-".into())) }
                    dt { "Image" } dd.mono { (spec.image) }
                    @if let Some(d) = &spec.deployment { dt { "Deployment" } dd { a href={ "/ui/deployments/" (d.deployment) } { (d.deployment) } " " span.mono { (short(&d.commit)) } } }
                }
                h2 { "Log" }
                div #service-log.log {
                    @for line in log.lines() {
                        @let mut parts = line.splitn(3, ' ');
                        @let (stamp, stream, text) = (parts.next().and_then(|s| s.parse::<u64>().ok()), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                        @match stamp {
                            Some(ms) => span class={ "line " (if stream == "slipway" { "engine" } else if stream == "stderr" { "stderr" } else { "stdout" }) } {
                                span.t { (clock(ms)) } " " span.s { (stream) } " " (text) "\n"
                            },
                            None => span.line { (line) "\n" },
                        }
                    }
                }
            }
        },
    )
}

/// Workspaces: id, repository, state, calls.
pub fn workspaces(frame: &Frame<'_>, list: &[WorkspaceRecord]) -> Markup {
    page(
        "Workspaces",
        Some(frame),
        html! {
            h1 { "Workspaces" }
            @if list.is_empty() { p.empty { "None." } } @else {
                table.workspaces {
                    thead { tr { th { "Workspace" } th { "Repository" } th { "State" } th { "Validate calls" } th { "Last" } } }
                    tbody {
                        @for w in list {
                            @let state = name_of(&w.state);
                            tr {
                                td.mono { a href={ "/ui/workspaces/" (w.id) } { (w.id) } }
                                td.repo { (w.repository) }
                                td { span class={ "state " (state) } { (state) } }
                                td { (w.history.len()) }
                                td { @match w.history.last() {
                                    Some(v) => { span class={ "state " (if v.ok { "succeeded" } else { "failed" }) } { (if v.ok { "ok" } else { "failed" }) } " " (clock(v.at_ms)) },
                                    None => "-",
                                } }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn findings_table(rows: &[(&str, &FindingView)]) -> Markup {
    html! {
        table.findings {
            thead { tr { th { "Where" } th { "Severity" } th { "Message" } th { "Step" } } }
            tbody {
                @for (step, f) in rows {
                    tr {
                        td.mono { (f.file.as_deref().unwrap_or("-")) @if let Some(l) = f.line { ":" (l) } @if let Some(c) = f.column { ":" (c) } }
                        td { span class={ "severity " (f.severity) } { (f.severity) } }
                        td { (f.message) @if let Some(rule) = &f.rule { " " span.hint { "[" (rule) "]" } } }
                        td { (step) }
                    }
                }
            }
        }
    }
}

/// One workspace: what it is, and every validate call with its steps and
/// findings, newest first.
pub fn workspace(frame: &Frame<'_>, w: &WorkspaceRecord) -> Markup {
    let state = name_of(&w.state);
    page(
        &format!("Workspace {}", w.id),
        Some(frame),
        html! {
            h1 { "Workspace " span.mono { (w.id) } " " span #state class={ "state " (state) } { (state) } }
            @if let Some(r) = &w.reason { p.reason { (r) } }
            dl.facts {
                dt { "Repository" } dd { (w.repository) }
                dt { "Base commit" } dd.mono { (w.base_sha.as_deref().unwrap_or("-")) }
                dt { "Image" } dd.mono { (w.image.as_deref().unwrap_or("-")) }
                dt { "Planned by" } dd.mono { (w.planned_by.as_deref().unwrap_or("-")) }
                dt { "Created" } dd { (clock(w.created_ms)) }
                dt { "Last used" } dd { (clock(w.last_used_ms)) }
                dt { "Full runs" } dd { (w.full_runs) }
            }
            h2 { "Validate history" }
            @if w.history.is_empty() { p.empty { "No validate call yet." } }
            @for (n, v) in w.history.iter().enumerate().rev() {
                section.validate {
                    h3 {
                        "#" (n + 1) " " (name_of(&v.tier)) " "
                        span class={ "state " (if v.ok { "succeeded" } else { "failed" }) } { (if v.ok { "ok" } else { "failed" }) }
                        " " span.hint { (clock(v.at_ms)) ", " (crate::logs::human_duration(v.duration_ms)) ", diff " (v.diff_sha256.chars().take(12).collect::<String>()) }
                    }
                    @if let Some(note) = &v.note { p.hint { (note) } }
                    table.steps {
                        thead { tr { th { "Step" } th { "Result" } th { "Took" } th { "Command" } } }
                        tbody {
                            @for s in &v.steps {
                                tr class=[(s.exit_code != Some(0)).then_some("failed")] {
                                    td { (s.name) }
                                    td { @match s.exit_code { Some(0) => "ok", Some(c) => { "exit " (c) }, None => { @if s.timed_out { "timed out" } @else { "stopped" } } } }
                                    td { (crate::logs::human_duration(s.duration_ms)) }
                                    td.mono { (s.command) }
                                }
                            }
                        }
                    }
                    @let findings: Vec<(&str, &FindingView)> = v.steps.iter().flat_map(|s| s.findings.iter().map(move |f| (s.name.as_str(), f))).collect();
                    @if !findings.is_empty() { (findings_table(&findings)) }
                    @for s in v.steps.iter().filter(|s| s.findings_error.is_some()) {
                        p.hint { (s.name) ": " (s.findings_error.as_deref().unwrap_or_default()) }
                    }
                    @for s in v.steps.iter().filter(|s| s.exit_code != Some(0) && !s.output.is_empty()) {
                        details.fold.failed open {
                            summary { "Output of " (s.name) }
                            pre.output { (s.output) }
                        }
                    }
                }
            }
        },
    )
}

/// One plugin as the plugins page lists it.
pub struct PluginRow {
    /// `active`, `shadowed`, `replaced` or `rejected`.
    pub status: &'static str,
    /// Its name.
    pub name: String,
    /// Its version, when its manifest could be read.
    pub version: Option<String>,
    /// `ecosystem`, `validator` or `readiness`.
    pub world: Option<&'static str>,
    /// `bundled`, or the folder it was read from.
    pub origin: String,
    /// Not bundled with the engine.
    pub third_party: bool,
    /// Why it is not active.
    pub reason: Option<String>,
    /// From its manifest.
    pub description: String,
}

/// The plugins the engine found, with their status (as `slipway plugins
/// list` shows them), and the sources it could not read.
pub fn plugins(frame: &Frame<'_>, rows: &[PluginRow], problems: &[String]) -> Markup {
    page(
        "Plugins",
        Some(frame),
        html! {
            h1 { "Plugins" }
            @for p in problems { p.error { (p) } }
            @if rows.is_empty() { p.empty { "No plugins found." } } @else {
                table.plugins {
                    thead { tr { th { "Plugin" } th { "Version" } th { "World" } th { "Status" } th { "Origin" } th { "About" } } }
                    tbody {
                        @for r in rows {
                            tr class=[(r.status == "rejected").then_some("failed")] {
                                td { (r.name) }
                                td.mono { (r.version.as_deref().unwrap_or("?")) }
                                td { (r.world.unwrap_or("?")) }
                                td { span class={ "state " (r.status) } { (r.status) } @if let Some(why) = &r.reason { " " span.hint { (why) } } }
                                td.mono { (r.origin) @if r.third_party { " " span.hint { "(third-party)" } } }
                                td { (r.description) }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// Deployments: name, branch, sync, health, what runs.
pub(crate) fn deployment_table(list: &[Deployment]) -> Markup {
    html! {
        table.deployments {
            thead { tr { th { "Deployment" } th { "Branch" } th { "Sync" } th { "Health" } th { "Running" } th { "Reason" } } }
            tbody {
                @for d in list {
                    @let (sync, health) = (name_of(&d.sync), name_of(&d.health));
                    tr {
                        td { a href={ "/ui/deployments/" (d.spec.name) } { (d.spec.name) } }
                        td { (d.spec.branch) }
                        td { span class={ "state " (sync) } { (sync) } @if d.down { " " span.hint { "(down)" } } }
                        td { span class={ "state " (health) } { (health) } }
                        td.mono { (d.running.as_ref().map(|r| short(&r.commit)).unwrap_or_else(|| "-".into())) }
                        td { (d.reason.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    }
}

/// Every deployment.
pub fn deployments(frame: &Frame<'_>, list: &[Deployment]) -> Markup {
    page(
        "Deployments",
        Some(frame),
        html! {
            h1 { "Deployments" }
            div #deployments data-refresh="3000" {
                @if list.is_empty() { p.empty { "None." } } @else { (deployment_table(list)) }
            }
        },
    )
}

/// One deployment: sync, health, what runs and ran, its rollouts.
pub fn deployment(frame: &Frame<'_>, d: &Deployment) -> Markup {
    let (sync, health) = (name_of(&d.sync), name_of(&d.health));
    page(
        &format!("Deployment {}", d.spec.name),
        Some(frame),
        html! {
            h1 { "Deployment " (d.spec.name) }
            div #deployment data-refresh="3000" {
                dl.facts {
                    dt { "Sync" } dd { span #sync class={ "state " (sync) } { (sync) } @if d.down { " " span.hint { "(down)" } } }
                    dt { "Health" } dd { span #health class={ "state " (health) } { (health) } }
                    @if let Some(r) = &d.reason { dt { "Reason" } dd { (r) } }
                    dt { "Repository" } dd { (d.spec.repository) }
                    dt { "Branch" } dd { (d.spec.branch) }
                    dt { "Head" } dd.mono { (d.wanted.as_deref().unwrap_or("-")) }
                    dt { "Running" } dd.mono { @match &d.running { Some(r) => { (r.commit) " " span.hint { "since " (clock(r.at_ms)) } }, None => "-" } }
                    @if let Some(p) = &d.previous { dt { "Previous" } dd.mono { (p.commit) } }
                    @if let Some(f) = &d.failed_commit { dt { "Failed commit" } dd.mono { (f) } }
                }
                @if let Some(r) = &d.running {
                    h2 { "Services" }
                    ul { @for s in &r.services { li { a href={ "/ui/services/" (s.spec.name) } { (s.name) } } } }
                }
                h2 { "History" }
                @if d.history.is_empty() { p.empty { "No rollout yet." } } @else {
                    table.history {
                        thead { tr { th { "Started" } th { "Commit" } th { "Cause" } th { "Result" } th { "Took" } th { "Gate" } th { "Reason" } } }
                        tbody {
                            @for r in &d.history {
                                @let result = r.result.name();
                                tr class=[(result != "deployed").then_some("failed")] {
                                    td { (clock(r.started_ms)) }
                                    td.mono { (short(&r.commit)) }
                                    td { (r.cause) }
                                    td { span class={ "state " (result) } { (result) } }
                                    td { (crate::logs::human_duration(r.duration_ms)) }
                                    td { @if let Some(j) = r.gate_job { a href={ "/ui/jobs/" (j) } { "#" (j) } } @else { "-" } }
                                    td { (r.reason.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn watched(w: &Watch) -> String {
    match (&w.spec.branch, &w.spec.tag) {
        (Some(b), _) => format!("branch {b}"),
        (None, Some(t)) => format!("tag {t}"),
        (None, None) => "default branch".into(),
    }
}

/// Every watch.
pub fn watches(frame: &Frame<'_>, list: &[Watch]) -> Markup {
    page(
        "Watches",
        Some(frame),
        html! {
            h1 { "Watches" }
            @if list.is_empty() { p.empty { "None." } } @else {
                table.watches {
                    thead { tr { th { "Watch" } th { "Repository" } th { "Watches" } th { "State" } th { "Last look" } th { "Error" } } }
                    tbody {
                        @for w in list {
                            tr {
                                td.mono { a href={ "/ui/watches/" (w.id) } { (w.id) } }
                                td.repo { (w.spec.repository) }
                                td { (watched(w)) }
                                td { @if w.paused { "paused" } @else { "active" } }
                                td { (w.state.last_look_ms.map(clock).unwrap_or_else(|| "-".into())) }
                                td { (w.state.error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// One watch: what it watches, per ref what it saw and ran, and its
/// webhook deliveries, newest first.
pub fn watch(frame: &Frame<'_>, w: &Watch, deliveries: &[Delivery]) -> Markup {
    page(
        &format!("Watch {}", w.id),
        Some(frame),
        html! {
            h1 { "Watch " span.mono { (w.id) } }
            dl.facts {
                dt { "Repository" } dd { (w.spec.repository) }
                dt { "Watches" } dd { (watched(w)) }
                dt { "State" } dd { @if w.paused { "paused" } @else { "active" } }
                dt { "Hook" } dd.mono { "/hooks/" (w.id) }
                dt { "Last look" } dd { (w.state.last_look_ms.map(clock).unwrap_or_else(|| "-".into())) }
                @if let Some(e) = &w.state.error { dt { "Error" } dd { (e) " " span.hint { "(" (w.state.failures) " failures)" } } }
            }
            h2 { "Refs" }
            @if w.state.refs.is_empty() { p.empty { "Nothing seen yet." } } @else {
                table.refs {
                    thead { tr { th { "Ref" } th { "Head" } th { "Last job" } th { "Waiting" } th { "Skipped" } } }
                    tbody {
                        @for (name, r) in &w.state.refs {
                            tr {
                                td.mono { (name) }
                                td.mono { (r.head.as_deref().map(short).unwrap_or_else(|| "-".into())) }
                                td { @match &r.submitted { Some((sha, job)) => { a href={ "/ui/jobs/" (job) } { "#" (job) } " " span.mono { (short(sha)) } }, None => "-" } }
                                td.mono { (r.pending.as_deref().map(short).unwrap_or_default()) }
                                td { (r.skipped.len()) }
                            }
                        }
                    }
                }
            }
            h2 { "Deliveries" }
            @if deliveries.is_empty() { p.empty { "No webhook delivery yet." } } @else {
                table.deliveries {
                    thead { tr { th { "At" } th { "Forge" } th { "Event" } th { "Ref" } th { "Status" } th { "Verdict" } } }
                    tbody {
                        @for d in deliveries.iter().rev() {
                            tr class=[(d.status >= 400).then_some("failed")] {
                                td { (clock(d.at_ms)) }
                                td { (d.forge.as_ref().map(name_of).unwrap_or_else(|| "-".into())) }
                                td { (d.event) }
                                td.mono { (d.reference.as_deref().unwrap_or("-")) }
                                td { (d.status) }
                                td { (d.verdict) }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_reads_unix_milliseconds_as_utc() {
        assert_eq!(clock(0), "1970-01-01 00:00:00");
        assert_eq!(clock(951_782_400_000 + 3_661_000), "2000-02-29 01:01:01");
        assert_eq!(clock(1_767_225_599_000), "2025-12-31 23:59:59");
    }
}
