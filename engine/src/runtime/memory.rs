//! An in-memory [`ContainerRuntime`]: containers are records, a start is a
//! flag, an exec answers from a handler the test sets. It lets the logic
//! of the products (restart budgets, adoption, busy and expiry, the order
//! of a reset) be tested in milliseconds without a daemon; what needs a
//! real kernel (hardening, limits, networking) is tested against Docker.
//!
//! Tests drive it from outside as a daemon would: [`MemoryRuntime::exit`]
//! ends a container's main process (an event and its waiters follow), and
//! [`MemoryRuntime::journal`] lists what the products asked for, in order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{broadcast, watch};

use super::{
    BoxStream, BuildEvent, BuildSpec, ContainerInfo, ContainerRuntime, ContainerSpec,
    ContainerSummary, EventFilter, EventKind, Exec, ExecSpec, HostFacts, ImageSummary, LogsOptions,
    Output, OutputStream, RuntimeError, RuntimeEvent,
};

/// How an exec ends: its exit code and what it printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecReply {
    /// What `exec_exit_code` reports once the exec is done (0 by default).
    pub exit_code: i64,
    /// Sent as one stdout chunk of the exec's output; empty: no chunk.
    pub stdout: String,
    /// Sent as one stderr chunk, after stdout; empty: no chunk.
    pub stderr: String,
}

/// Answers each exec: the container's name and the exec.
pub type ExecHandler = Arc<dyn Fn(&str, &ExecSpec) -> ExecReply + Send + Sync>;

struct Fake {
    id: String,
    spec: ContainerSpec,
    running: bool,
    exit_code: Option<i64>,
    oom_killed: bool,
    /// Sends the exit code when the main process ends, `None` on removal.
    exited: watch::Sender<Option<Option<i64>>>,
    output: Vec<Output>,
}

#[derive(Default)]
struct State {
    serial: u64,
    containers: BTreeMap<String, Fake>,
    images: HashSet<String>,
    volumes: HashMap<String, HashMap<String, String>>,
    networks: HashMap<String, HashMap<String, String>>,
    execs: HashMap<String, i64>,
    journal: Vec<String>,
    /// The next build fails with this reason.
    build_failure: Option<String>,
}

/// A container runtime that keeps everything in memory.
pub struct MemoryRuntime {
    state: Mutex<State>,
    events: broadcast::Sender<RuntimeEvent>,
    exec_handler: Mutex<ExecHandler>,
    facts: HostFacts,
}

impl Default for MemoryRuntime {
    fn default() -> Self {
        MemoryRuntime::new()
    }
}

impl MemoryRuntime {
    /// Every exec succeeds and prints nothing until told otherwise.
    pub fn new() -> MemoryRuntime {
        MemoryRuntime {
            state: Mutex::new(State::default()),
            events: broadcast::channel(1024).0,
            exec_handler: Mutex::new(Arc::new(|_, _| ExecReply::default())),
            facts: HostFacts {
                engine: "Memory".into(),
                runtimes: vec!["runc".into()],
                default_runtime: "runc".into(),
                ..HostFacts::default()
            },
        }
    }

    /// Answer execs with `handler`.
    pub fn on_exec(&self, handler: impl Fn(&str, &ExecSpec) -> ExecReply + Send + Sync + 'static) {
        *self.lock_handler() = Arc::new(handler);
    }

    /// Make `tag` an image the runtime has.
    pub fn add_image(&self, tag: &str) {
        self.lock().images.insert(tag.to_owned());
    }

    /// The next build fails with `reason`.
    pub fn fail_next_build(&self, reason: &str) {
        self.lock().build_failure = Some(reason.to_owned());
    }

    /// The container's main process ends with `code` (by id or name), as a
    /// crash or an OOM kill would end it: an event, and its waiters wake.
    pub fn exit(&self, container: &str, code: i64, oom: bool) {
        let event = {
            let mut state = self.lock();
            let Some(fake) = find_mut(&mut state, container) else {
                return;
            };
            if !fake.running {
                return;
            }
            fake.running = false;
            fake.exit_code = Some(code);
            fake.oom_killed = oom;
            let _ = fake.exited.send_replace(Some(Some(code)));
            event_of(fake, EventKind::Died)
        };
        if oom {
            let _ = self.events.send(RuntimeEvent {
                kind: EventKind::OomKilled,
                ..event.clone()
            });
        }
        let _ = self.events.send(event);
    }

    /// A container's own health check says it is unhealthy.
    pub fn unhealthy(&self, container: &str) {
        let event = {
            let mut state = self.lock();
            let Some(fake) = find_mut(&mut state, container) else {
                return;
            };
            RuntimeEvent {
                unhealthy: true,
                ..event_of(fake, EventKind::Health)
            }
        };
        let _ = self.events.send(event);
    }

    /// Output the container's main process printed.
    pub fn print(&self, container: &str, line: &str) {
        if let Some(fake) = find_mut(&mut self.lock(), container) {
            fake.output.push(Output {
                stream: OutputStream::Stdout,
                bytes: Bytes::from(format!("{line}\n")),
            });
        }
    }

    /// What the products asked for, in order: `create <name>`,
    /// `start <name>`, `exec <name> <argv>`, `restart <name>`,
    /// `stop <name>`, `kill <name> <signal>`, `remove <name>`,
    /// `build <tag>`, `create-volume <name>`, `remove-volume <name>`.
    pub fn journal(&self) -> Vec<String> {
        self.lock().journal.clone()
    }

    /// The containers there are now, as an inspection shows them.
    pub fn containers(&self) -> Vec<ContainerInfo> {
        self.lock().containers.values().map(info_of).collect()
    }

    /// The names of the containers there are now.
    pub fn names(&self) -> Vec<String> {
        self.lock()
            .containers
            .values()
            .map(|c| c.spec.name.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_handler(&self) -> std::sync::MutexGuard<'_, ExecHandler> {
        self.exec_handler.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, entry: String) {
        self.lock().journal.push(entry);
    }

    /// Stop the main process with `code` (a stop or a kill).
    fn end(&self, id: &str, code: i64) -> Result<(), RuntimeError> {
        let event = {
            let mut state = self.lock();
            let fake = find_mut(&mut state, id).ok_or_else(|| not_found("container", id))?;
            if !fake.running {
                return Ok(());
            }
            fake.running = false;
            fake.exit_code = Some(code);
            let _ = fake.exited.send_replace(Some(Some(code)));
            event_of(fake, EventKind::Died)
        };
        let _ = self.events.send(event);
        Ok(())
    }

    fn name_of(&self, id: &str) -> String {
        find_mut(&mut self.lock(), id)
            .map(|f| f.spec.name.clone())
            .unwrap_or_else(|| id.to_owned())
    }
}

fn find_mut<'a>(state: &'a mut State, container: &str) -> Option<&'a mut Fake> {
    if state.containers.contains_key(container) {
        return state.containers.get_mut(container);
    }
    state
        .containers
        .values_mut()
        .find(|c| c.spec.name == container)
}

fn not_found(what: &'static str, name: &str) -> RuntimeError {
    RuntimeError::NotFound {
        what,
        name: name.to_owned(),
    }
}

fn info_of(fake: &Fake) -> ContainerInfo {
    ContainerInfo {
        id: fake.id.clone(),
        running: fake.running,
        exit_code: fake.exit_code,
        oom_killed: fake.oom_killed,
        labels: fake.spec.labels.clone(),
        image: fake.spec.image.clone(),
        cmd: fake.spec.cmd.clone().unwrap_or_default(),
        user: fake.spec.user.clone().unwrap_or_default(),
        started_at: None,
        mounts: Vec::new(),
    }
}

fn event_of(fake: &Fake, kind: EventKind) -> RuntimeEvent {
    RuntimeEvent {
        kind,
        container: fake.id.clone(),
        labels: fake.spec.labels.clone(),
        unhealthy: false,
    }
}

fn has_labels(labels: &HashMap<String, String>, wanted: &[String]) -> bool {
    wanted.iter().all(|w| {
        let (key, value) = w.split_once('=').unwrap_or((w, ""));
        labels.get(key).map(String::as_str) == Some(value)
    })
}

#[async_trait::async_trait]
impl ContainerRuntime for MemoryRuntime {
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let mut state = self.lock();
        if !state.images.contains(&spec.image) {
            return Err(RuntimeError::ImageMissing(spec.image.clone()));
        }
        if state.containers.values().any(|c| c.spec.name == spec.name) {
            return Err(RuntimeError::Engine {
                action: "create the container",
                message: format!("Conflict: the name {} is already in use", spec.name),
            });
        }
        state.serial += 1;
        let id = format!("{:064x}", state.serial);
        state.containers.insert(
            id.clone(),
            Fake {
                id: id.clone(),
                spec: spec.clone(),
                running: false,
                exit_code: None,
                oom_killed: false,
                exited: watch::channel(None).0,
                output: Vec::new(),
            },
        );
        state.journal.push(format!("create {}", spec.name));
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        let fake = find_mut(&mut state, id).ok_or_else(|| not_found("container", id))?;
        fake.running = true;
        fake.exit_code = None;
        fake.oom_killed = false;
        let _ = fake.exited.send_replace(None);
        let name = fake.spec.name.clone();
        state.journal.push(format!("start {name}"));
        Ok(())
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let mut state = self.lock();
        find_mut(&mut state, id)
            .map(|f| info_of(f))
            .ok_or_else(|| not_found("container", id))
    }

    async fn list_containers(
        &self,
        labels: &[String],
    ) -> Result<Vec<ContainerSummary>, RuntimeError> {
        Ok(self
            .lock()
            .containers
            .values()
            .filter(|c| has_labels(&c.spec.labels, labels))
            .map(|c| ContainerSummary {
                id: c.id.clone(),
                labels: c.spec.labels.clone(),
                running: c.running,
            })
            .collect())
    }

    async fn stop_container(&self, id: &str, _grace: Duration) -> Result<(), RuntimeError> {
        self.end(id, 143)?;
        let name = self.name_of(id);
        self.record(format!("stop {name}"));
        Ok(())
    }

    async fn kill_container(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        let code = if signal == "KILL" { 137 } else { 143 };
        self.end(id, code)?;
        let name = self.name_of(id);
        self.record(format!("kill {name} {signal}"));
        Ok(())
    }

    async fn restart_container(&self, id: &str, _grace: Duration) -> Result<(), RuntimeError> {
        {
            let mut state = self.lock();
            let fake = find_mut(&mut state, id).ok_or_else(|| not_found("container", id))?;
            fake.running = true;
            fake.exit_code = None;
            fake.oom_killed = false;
            let _ = fake.exited.send_replace(None);
        }
        let name = self.name_of(id);
        self.record(format!("restart {name}"));
        Ok(())
    }

    async fn wait_container(&self, id: &str) -> Option<i64> {
        let mut rx = {
            let mut state = self.lock();
            let fake = find_mut(&mut state, id)?;
            if !fake.running {
                return fake.exit_code;
            }
            fake.exited.subscribe()
        };
        loop {
            if let Some(code) = *rx.borrow_and_update() {
                return code;
            }
            // Removed: the sender is gone.
            rx.changed().await.ok()?;
        }
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        let key = match find_mut(&mut state, id) {
            Some(fake) => fake.id.clone(),
            None => return Ok(()),
        };
        if let Some(fake) = state.containers.remove(&key) {
            let _ = fake.exited.send_replace(Some(None));
            state.journal.push(format!("remove {}", fake.spec.name));
        }
        Ok(())
    }

    fn logs(&self, id: &str, options: LogsOptions) -> BoxStream<Result<Output, RuntimeError>> {
        let (output, wait) = {
            let mut state = self.lock();
            match find_mut(&mut state, id) {
                Some(fake) => (fake.output.clone(), Some(fake.exited.subscribe())),
                None => (Vec::new(), None),
            }
        };
        let head = futures_util::stream::iter(output.into_iter().map(Ok));
        // Following: the stream ends when the container stops.
        let tail = futures_util::stream::once(async move {
            if let (true, Some(mut rx)) = (options.follow, wait) {
                while rx.borrow_and_update().is_none() {
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
            }
        })
        .filter_map(|()| std::future::ready(None));
        Box::pin(head.chain(tail))
    }

    async fn exec(&self, container: &str, spec: ExecSpec) -> Result<Exec, RuntimeError> {
        let name = {
            let mut state = self.lock();
            let fake =
                find_mut(&mut state, container).ok_or_else(|| not_found("container", container))?;
            if !fake.running {
                return Err(RuntimeError::Engine {
                    action: "create an exec",
                    message: format!("container {container} is not running"),
                });
            }
            fake.spec.name.clone()
        };
        self.record(format!("exec {name} {}", spec.argv.join(" ")));
        let handler = self.lock_handler().clone();
        let reply = handler(&name, &spec);
        let id = {
            let mut state = self.lock();
            state.serial += 1;
            let id = format!("exec-{}", state.serial);
            state.execs.insert(id.clone(), reply.exit_code);
            id
        };
        let chunks = [
            (OutputStream::Stdout, reply.stdout),
            (OutputStream::Stderr, reply.stderr),
        ]
        .into_iter()
        .filter(|(_, text)| !text.is_empty())
        .map(|(stream, text)| {
            Ok(Output {
                stream,
                bytes: Bytes::from(text),
            })
        })
        .collect::<Vec<_>>();
        Ok(Exec {
            id,
            output: Box::pin(futures_util::stream::iter(chunks)),
        })
    }

    async fn exec_exit_code(&self, exec: &str) -> Result<Option<i64>, RuntimeError> {
        self.lock()
            .execs
            .get(exec)
            .map(|code| Some(*code))
            .ok_or_else(|| not_found("exec", exec))
    }

    fn events(&self, filter: EventFilter) -> BoxStream<Result<RuntimeEvent, RuntimeError>> {
        let rx = self.events.subscribe();
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((event, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Box::pin(stream.filter_map(move |event| {
            let wanted = (filter.kinds.is_empty() || filter.kinds.contains(&event.kind))
                && (filter.containers.is_empty() || filter.containers.contains(&event.container))
                && has_labels(&event.labels, &filter.labels);
            std::future::ready(wanted.then_some(Ok(event)))
        }))
    }

    async fn image_id(&self, tag: &str) -> Result<Option<String>, RuntimeError> {
        Ok(self
            .lock()
            .images
            .contains(tag)
            .then(|| format!("sha256:{tag}")))
    }

    fn build_image(&self, spec: BuildSpec) -> BoxStream<BuildEvent> {
        let mut state = self.lock();
        state.journal.push(format!("build {}", spec.tag));
        let events = match state.build_failure.take() {
            Some(reason) => vec![BuildEvent::Failed(reason)],
            None => {
                state.images.insert(spec.tag.clone());
                vec![BuildEvent::Output(format!("built {}\n", spec.tag))]
            }
        };
        Box::pin(futures_util::stream::iter(events))
    }

    async fn list_images(&self, _label: &str) -> Result<Vec<ImageSummary>, RuntimeError> {
        let state = self.lock();
        Ok(state
            .images
            .iter()
            .map(|tag| ImageSummary {
                tags: vec![tag.clone()],
                size: 0,
                containers: state
                    .containers
                    .values()
                    .filter(|c| &c.spec.image == tag)
                    .count() as u64,
            })
            .collect())
    }

    async fn remove_image(&self, tag: &str) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        if state.containers.values().any(|c| c.spec.image == tag) {
            return Err(RuntimeError::Engine {
                action: "remove an image",
                message: format!("image {tag} is being used by a container"),
            });
        }
        state
            .images
            .remove(tag)
            .then_some(())
            .ok_or_else(|| not_found("image", tag))
    }

    async fn volume_exists(&self, name: &str) -> bool {
        self.lock().volumes.contains_key(name)
    }

    async fn create_volume(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        state.volumes.entry(name.to_owned()).or_insert(labels);
        state.journal.push(format!("create-volume {name}"));
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        state
            .volumes
            .remove(name)
            .ok_or_else(|| not_found("volume", name))?;
        state.journal.push(format!("remove-volume {name}"));
        Ok(())
    }

    async fn create_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        state.journal.push(format!("network {name}"));
        state.networks.entry(name.to_owned()).or_insert(labels);
        Ok(())
    }

    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError> {
        match self.lock().networks.remove(name) {
            Some(_) => Ok(()),
            None => Err(not_found("network", name)),
        }
    }

    async fn host_facts(&self) -> Result<HostFacts, RuntimeError> {
        Ok(self.facts.clone())
    }
}
