//! Shared by the queue and API tests: an executor that runs no host
//! commands and does what the job's `behaviour` label says.
#![allow(dead_code)] // each test binary uses part of it

use std::sync::Mutex;

use slipway::executor::{Attempt, ExecFuture, Executor};
use slipway::job::{JobId, JobSpec, Outcome};

#[derive(Default)]
pub struct ScriptedExecutor {
    /// Job ids in the order attempts started.
    pub started: Mutex<Vec<JobId>>,
}

impl Executor for ScriptedExecutor {
    fn execute(&self, attempt: Attempt) -> ExecFuture {
        self.started.lock().unwrap().push(attempt.job.id);
        Box::pin(async move {
            let behaviour = attempt
                .job
                .spec
                .labels
                .get("behaviour")
                .cloned()
                .unwrap_or_default();
            attempt.log.line("stdout", &format!("running {behaviour}"));
            attempt.report(1, 1, behaviour.clone()).await;
            match behaviour.as_str() {
                "fail" => Outcome::Failed {
                    reason: "tests failed".into(),
                },
                "infra" => Outcome::InfrastructureError {
                    reason: "docker unavailable".into(),
                },
                "crash" => panic!("executor crashed on purpose"),
                "hang" => {
                    attempt.cancel.cancelled().await;
                    Outcome::Cancelled
                }
                _ => Outcome::Succeeded,
            }
        })
    }
}

pub fn spec_json(behaviour: &str) -> serde_json::Value {
    serde_json::json!({
        "repository": "https://example.com/repo.git",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "labels": { "behaviour": behaviour },
    })
}

pub fn spec(behaviour: &str) -> JobSpec {
    serde_json::from_value(spec_json(behaviour)).unwrap()
}
