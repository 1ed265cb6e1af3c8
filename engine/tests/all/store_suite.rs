//! Every part of the store beside the queue (profiles, managed services,
//! images, tokens, dashboard sessions, the audit log, workspaces, watches and their
//! deliveries, deployments, the callbacks outbox), one suite run against
//! the redb store and the PostgreSQL store (`on_every_store!`). The queue's
//! own suite is `queue.rs`.

use serde_json::json;
use slipway::callbacks::OutboxEntry;
use slipway::deployments::{Deployment, DeploymentSpec};
use slipway::job::{JobState, Outcome};
use slipway::queue::LeaseRequest;
use slipway::service::{ManagedService, ManagedServiceSpec};
use slipway::token::{AuditEntry, Scope, SessionRecord};
use slipway::watches::Delivery;

use crate::support::spec;
use crate::support::stores::{Backend, Place};

fn service(name: &str, image: &str) -> ManagedService {
    let spec: ManagedServiceSpec =
        serde_json::from_value(json!({"name": name, "image": image})).unwrap();
    ManagedService::new(spec)
}

fn deployment(name: &str) -> Deployment {
    let spec: DeploymentSpec = serde_json::from_value(
        json!({"name": name, "repository": "https://example.com/shop.git", "branch": "main"}),
    )
    .unwrap();
    Deployment::new(spec, 1_000)
}

fn outbox(key: &str, job: u64, due: Option<u64>) -> OutboxEntry {
    serde_json::from_value(json!({
        "key": key, "job": job, "kind": "callback", "url": "https://hooks.example.com/x",
        "secret": "env:X", "event": "job.succeeded", "payload": {"id": job},
        "created_ms": 1, "next_attempt_ms": due, "attempts": [],
        "delivered_ms": null, "gave_up": null,
    }))
    .unwrap()
}

fn delivery(event: &str) -> Delivery {
    serde_json::from_value(json!({
        "seq": 0, "at_ms": 5, "forge": null, "event": event, "reference": "refs/heads/main",
        "delivery_id": null, "status": 202, "verdict": "queued", "jobs": [],
    }))
    .unwrap()
}

/// Named records: create-only keeps the first, a put replaces and says so,
/// lists come in name order, a delete says whether there was one, and all
/// of it survives a reopen.
async fn named_records_replace_list_in_order_and_survive_a_reopen(b: Backend) {
    let place = Place::new(b);
    {
        let store = place.open().await;
        assert!(
            !store
                .put_service(service("web", "nginx:1"), true)
                .await
                .unwrap()
        );
        // Create-only: the name is taken, nothing is written.
        assert!(
            store
                .put_service(service("web", "nginx:2"), true)
                .await
                .unwrap()
        );
        assert!(
            !store
                .put_service(service("api", "api:1"), false)
                .await
                .unwrap()
        );
        assert!(
            store
                .put_service(service("api", "api:2"), false)
                .await
                .unwrap()
        );
        assert!(
            !store
                .put_service(service("Zed", "z:1"), false)
                .await
                .unwrap()
        );
        assert!(!store.touch_image("slipway-runner/a:1").await.unwrap());
        assert!(store.touch_image("slipway-runner/a:1").await.unwrap());
    }
    let store = place.open().await;
    let names: Vec<String> = store
        .list_services()
        .await
        .unwrap()
        .into_iter()
        .map(|s| format!("{}={}", s.spec.name, s.spec.image))
        .collect();
    // Byte order, as redb keeps its keys: upper case before lower case.
    assert_eq!(names, ["Zed=z:1", "api=api:2", "web=nginx:1"]);
    assert_eq!(
        store.get_service("web").await.unwrap().unwrap().spec.image,
        "nginx:1"
    );
    assert!(store.get_service("nope").await.unwrap().is_none());
    assert!(store.delete_service("api").await.unwrap());
    assert!(!store.delete_service("api").await.unwrap());
    assert_eq!(store.list_services().await.unwrap().len(), 2);
    let images = store.image_uses().await.unwrap();
    assert_eq!(images.len(), 1);
    assert!(images[0].last_used_ms > 0);
    assert!(store.forget_image("slipway-runner/a:1").await.unwrap());
    assert!(store.image_uses().await.unwrap().is_empty());
}

/// The audit log numbers its entries itself and pages newest first.
async fn the_audit_log_numbers_and_pages_newest_first(b: Backend) {
    let store = Place::new(b).open().await;
    let mut seqs = Vec::new();
    for i in 0..5 {
        let entry = AuditEntry {
            seq: 0,
            at_ms: 100 + i,
            token: "configured".into(),
            method: "POST".into(),
            route: "/api/v1/jobs".into(),
            target: format!("job {i}"),
            status: 201,
        };
        seqs.push(store.append_audit(entry).await.unwrap());
    }
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
    let page = store.list_audit(None, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(),
        ["job 4", "job 3"]
    );
    let next = store.list_audit(Some(page[1].seq), 10).await.unwrap();
    assert_eq!(
        next.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(),
        ["job 2", "job 1", "job 0"]
    );
}

/// Deliveries are numbered per watch, listed newest first, and go with
/// their watch.
async fn deliveries_are_numbered_per_watch_and_go_with_it(b: Backend) {
    let store = Place::new(b).open().await;
    for event in ["push", "push", "ping"] {
        store.add_delivery("w1", delivery(event)).await.unwrap();
    }
    let other = store.add_delivery("w2", delivery("push")).await.unwrap();
    assert_eq!(other.seq, 1);
    let listed = store.list_deliveries("w1").await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|d| (d.seq, d.event.as_str()))
            .collect::<Vec<_>>(),
        [(3, "ping"), (2, "push"), (1, "push")]
    );
    // No watch record was stored: deleting says so, and still drops the
    // deliveries of that id.
    assert!(!store.delete_watch("w1").await.unwrap());
    assert!(store.list_deliveries("w1").await.unwrap().is_empty());
    assert_eq!(store.list_deliveries("w2").await.unwrap().len(), 1);
}

/// Deployments: create-new refuses a taken name; a change with its outbox
/// messages is one write, and a message already there is left as it is.
async fn deployments_and_their_announcements_are_written_together(b: Backend) {
    let store = Place::new(b).open().await;
    assert!(!store.put_deployment_new(deployment("shop")).await.unwrap());
    assert!(store.put_deployment_new(deployment("shop")).await.unwrap());
    let mut changed = deployment("shop");
    changed.reason = Some("rolled out".into());
    let mut first = outbox("d/shop/1/0", 0, Some(10));
    first.deployment = Some("shop".into());
    assert!(
        store
            .put_deployment_announcing(changed.clone(), vec![first.clone()])
            .await
            .unwrap()
    );
    let mut again = first.clone();
    again.url = "https://elsewhere.example.com/".into();
    store
        .put_deployment_announcing(changed.clone(), vec![again])
        .await
        .unwrap();
    let kept = store.callbacks_with_prefix("d/shop/").await.unwrap();
    assert_eq!(kept, vec![first]);
    assert_eq!(store.get_deployment("shop").await.unwrap(), Some(changed));
    assert_eq!(store.list_deployments().await.unwrap().len(), 1);
    assert!(store.delete_deployment("shop").await.unwrap());
    assert!(store.get_deployment("shop").await.unwrap().is_none());
}

/// The outbox: due messages soonest first, an update moves a message in
/// time (or out of the due list), a job's messages by prefix, and a job's
/// final state writes the messages its callbacks are owed.
async fn the_outbox_lists_due_messages_and_a_job_change_writes_its_own(b: Backend) {
    let store = Place::new(b).open().await;
    store
        .update_callback(outbox("a/1", 1, Some(30)))
        .await
        .unwrap();
    store
        .update_callback(outbox("b/1", 2, Some(10)))
        .await
        .unwrap();
    store
        .update_callback(outbox("c/1", 3, Some(99)))
        .await
        .unwrap();
    let due: Vec<String> = store
        .due_callbacks(50, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(due, ["b/1", "a/1"]);
    let mut delivered = outbox("b/1", 2, None);
    delivered.delivered_ms = Some(40);
    store.update_callback(delivered).await.unwrap();
    assert_eq!(store.due_callbacks(50, 10).await.unwrap().len(), 1);
    assert_eq!(store.due_callbacks(50, 0).await.unwrap().len(), 0);

    // A job with a callback: its final state owes one message.
    let mut job = spec("succeed");
    job.callbacks = serde_json::from_value(
        json!([{"url": "https://hooks.example.com/done", "secret": "env:X"}]),
    )
    .unwrap();
    let id = store.submit(job).await.unwrap().record.id;
    let leased = store
        .lease(LeaseRequest {
            worker: "node-a/1".into(),
            max: 1,
            lease_ms: 60_000,
            per_repository: 0,
            total: 0,
        })
        .await
        .unwrap();
    let fence = leased[0].lease.as_ref().unwrap().fence;
    let done = store.complete(id, fence, Outcome::Succeeded).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    let owed = store.job_callbacks(id).await.unwrap();
    assert_eq!(owed.len(), 1, "{owed:?}");
    assert_eq!(owed[0].job, id);
    assert_eq!(owed[0].url, "https://hooks.example.com/done");
}

/// Workspace records by id, open and closed.
async fn workspace_records_are_kept_by_id(b: Backend) {
    let store = Place::new(b).open().await;
    assert!(store.list_workspaces().await.unwrap().is_empty());
    assert!(store.get_workspace("ws-1").await.unwrap().is_none());
    assert!(store.get_workspace_runtime("ws-1").await.unwrap().is_none());
    // Deleting a runtime that was never stored says so.
    assert!(!store.put_workspace_runtime("ws-1", None).await.unwrap());
}

/// Listing pages through jobs newest first, by state.
async fn jobs_list_newest_first_by_state_and_page(b: Backend) {
    let store = Place::new(b).open().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(store.submit(spec("succeed")).await.unwrap().record.id);
    }
    store.cancel(ids[1]).await.unwrap();
    let filter = |state, before, limit| slipway::queue::ListFilter {
        state,
        before,
        limit,
    };
    let page: Vec<u64> = store
        .list(&filter(None, None, 2))
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(page, [ids[4], ids[3]]);
    let rest: Vec<u64> = store
        .list(&filter(None, Some(ids[3]), 0))
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(rest, [ids[2], ids[1], ids[0]]);
    let cancelled = store
        .list(&filter(Some(JobState::Cancelled), None, 0))
        .await
        .unwrap();
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0].id, ids[1]);
    let counts = store.counts().await.unwrap();
    assert_eq!(
        (counts[&JobState::Queued], counts[&JobState::Cancelled]),
        (4, 1)
    );
    assert!(store.get(u64::MAX).await.unwrap().is_none());
}

/// An export of one store imports into the other kind of store with its
/// history: every record, job ids, fences and sequence numbers go on
/// from where they were; an import into a store that holds something is
/// refused.
async fn an_export_moves_to_the_other_store_with_its_history(b: Backend) {
    let source = Place::new(b).open().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(source.submit(spec("succeed")).await.unwrap().record.id);
    }
    let leased = source
        .lease(LeaseRequest {
            worker: "node-a/1".into(),
            max: 1,
            lease_ms: 60_000,
            per_repository: 0,
            total: 0,
        })
        .await
        .unwrap();
    let fence = leased[0].lease.as_ref().unwrap().fence;
    source
        .complete(leased[0].id, fence, Outcome::Succeeded)
        .await
        .unwrap();
    source.cancel(ids[2]).await.unwrap();
    source
        .put_service(service("web", "nginx:1"), false)
        .await
        .unwrap();
    source.add_delivery("w1", delivery("push")).await.unwrap();
    source
        .update_callback(outbox("a/1", 1, Some(30)))
        .await
        .unwrap();
    let entry = AuditEntry {
        seq: 0,
        at_ms: 1,
        token: "configured".into(),
        method: "POST".into(),
        route: "/api/v1/jobs".into(),
        target: "job 1".into(),
        status: 201,
    };
    let audit_seq = source.append_audit(entry.clone()).await.unwrap();
    let exported = source.export_all().await.unwrap();

    let other = match b {
        Backend::Redb => Backend::Postgres,
        Backend::Postgres => Backend::Redb,
    };
    let target = Place::new(other).open().await;
    assert_eq!(
        target.import_all(exported.clone()).await.unwrap(),
        exported.len()
    );
    for id in &ids {
        assert_eq!(
            target.get(*id).await.unwrap(),
            source.get(*id).await.unwrap(),
            "job {id}"
        );
    }
    assert_eq!(
        target.counts().await.unwrap(),
        source.counts().await.unwrap()
    );
    assert_eq!(
        target.list_services().await.unwrap(),
        source.list_services().await.unwrap()
    );
    assert_eq!(
        target.list_deliveries("w1").await.unwrap(),
        source.list_deliveries("w1").await.unwrap()
    );
    assert_eq!(target.callbacks_with_prefix("a/").await.unwrap().len(), 1);
    assert_eq!(
        target.list_audit(None, 10).await.unwrap(),
        source.list_audit(None, 10).await.unwrap()
    );
    // Numbering goes on from the source's.
    let next = target.submit(spec("succeed")).await.unwrap().record;
    assert!(next.id > *ids.iter().max().unwrap(), "{}", next.id);
    let lease = target
        .lease(LeaseRequest {
            worker: "node-b/1".into(),
            max: 1,
            lease_ms: 60_000,
            per_repository: 0,
            total: 0,
        })
        .await
        .unwrap();
    assert!(lease[0].lease.as_ref().unwrap().fence > fence);
    assert!(target.append_audit(entry).await.unwrap() > audit_seq);
    // A store that holds something is refused, and keeps what it holds.
    let refused = target.import_all(exported).await.unwrap_err();
    assert!(refused.to_string().contains("not empty"), "{refused}");
    assert_eq!(target.counts().await.unwrap()[&JobState::Succeeded], 1);
}

fn session(csrf: &str, expires_ms: u64) -> SessionRecord {
    SessionRecord {
        token: "tok-1".into(),
        scope: Scope::Run,
        token_hash: "h".into(),
        csrf: csrf.into(),
        expires_ms,
    }
}

/// Sessions: found until they expire or are closed, kept across a reopen;
/// opening one sweeps the expired and, past the cap, the ones ending soonest.
async fn sessions_expire_are_capped_and_survive_a_reopen(b: Backend) {
    let place = Place::new(b);
    let now = slipway::job::now_ms();
    {
        let store = place.open().await;
        store
            .open_session("a".into(), session("ca", now + 60_000), 3)
            .await
            .unwrap();
        store
            .open_session("b".into(), session("cb", now + 1), 3)
            .await
            .unwrap();
        assert_eq!(
            store.get_session("a", now).await.unwrap(),
            Some(session("ca", now + 60_000))
        );
        assert_eq!(
            store.get_session("b", now + 1).await.unwrap(),
            None,
            "expired at its expiry"
        );
        assert_eq!(store.get_session("nope", now).await.unwrap(), None);
        assert!(store.close_session("a").await.unwrap());
        assert!(!store.close_session("a").await.unwrap());
        assert_eq!(store.get_session("a", now).await.unwrap(), None);
        store
            .open_session("keep".into(), session("ck", now + 90_000), 3)
            .await
            .unwrap();
    }
    let store = place.open().await;
    assert_eq!(
        store
            .get_session("keep", now)
            .await
            .unwrap()
            .map(|s| s.csrf),
        Some("ck".into()),
        "a reopened store keeps its sessions"
    );
    // The cap (3): `b` (expired) is swept, then the soonest to end go.
    std::thread::sleep(std::time::Duration::from_millis(5));
    for (id, ends) in [("s1", 10_000), ("s2", 20_000), ("s3", 30_000)] {
        store
            .open_session(id.into(), session(id, now + ends), 3)
            .await
            .unwrap();
    }
    let mut live = Vec::new();
    for id in ["b", "keep", "s1", "s2", "s3"] {
        if store.get_session(id, 0).await.unwrap().is_some() {
            live.push(id);
        }
    }
    assert_eq!(live, ["keep", "s2", "s3"]);
}

crate::on_every_store!(
    sessions_expire_are_capped_and_survive_a_reopen,
    an_export_moves_to_the_other_store_with_its_history,
    named_records_replace_list_in_order_and_survive_a_reopen,
    the_audit_log_numbers_and_pages_newest_first,
    deliveries_are_numbered_per_watch_and_go_with_it,
    deployments_and_their_announcements_are_written_together,
    the_outbox_lists_due_messages_and_a_job_change_writes_its_own,
    workspace_records_are_kept_by_id,
    jobs_list_newest_first_by_state_and_page,
);
