//! What a user declares for a watch (`POST /api/v1/watches`), and its
//! checks: every problem by field, before anything is stored.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Forge;
use crate::job::{FieldProblem, JobSpec, SpecPolicy};

/// Default seconds between polls.
pub const DEFAULT_POLL_S: u64 = 60;
/// The shortest poll interval accepted: a forge is not a busy loop.
pub const MIN_POLL_S: u64 = 10;

/// A watch as declared. Unknown fields are an error.
#[derive(Debug, Clone, PartialEq, ToSchema, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSpec {
    /// The repository to watch (any git URL the engine can `ls-remote`).
    pub repository: String,
    /// The branches to follow: a name (`main`) or a glob (`release/*`).
    /// Exactly one of `branch` and `tag` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The tags to follow, by glob (`v*`): each new tag runs its commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The job each new commit runs: the fields of a job spec but
    /// `repository` and `commit`, which the watch fills in.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub job: serde_json::Map<String, serde_json::Value>,
    /// Seconds between polls (default 60, at least 10; a little jitter is
    /// added); `0` polls never: only webhooks trigger a look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval_s: Option<u64>,
    /// The forges whose webhooks this watch accepts (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<Forge>>,
    /// URLs told of each of its jobs' final state (or every change),
    /// added to the template's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callbacks: Vec<crate::callbacks::CallbackSpec>,
    /// Where its jobs' states are posted as commit statuses (unless the
    /// template names its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge: Option<crate::callbacks::ForgeSpec>,
}

impl WatchSpec {
    /// The refs this watch follows, as a glob over full ref names.
    pub fn ref_glob(&self) -> String {
        match (&self.branch, &self.tag) {
            (_, Some(tag)) => format!("refs/tags/{tag}"),
            (Some(branch), None) => format!("refs/heads/{branch}"),
            (None, None) => "refs/heads/main".to_owned(),
        }
    }

    /// Whether `reference` (a full ref name) is one this watch follows.
    pub fn follows(&self, reference: &str) -> bool {
        globset::GlobBuilder::new(&self.ref_glob())
            .literal_separator(true)
            .build()
            .is_ok_and(|g| g.compile_matcher().is_match(reference))
    }

    /// Seconds between polls; `None`: webhooks only.
    pub fn poll_interval(&self) -> Option<u64> {
        match self.poll_interval_s {
            Some(0) => None,
            Some(s) => Some(s),
            None => Some(DEFAULT_POLL_S),
        }
    }

    /// The forges whose deliveries are accepted.
    pub fn accepted(&self) -> Vec<Forge> {
        self.sources.clone().unwrap_or_else(|| Forge::ALL.to_vec())
    }

    /// The job for `commit` of `reference`: the template with the
    /// repository and commit filled in.
    pub fn job_for(&self, commit: &str) -> Result<JobSpec, serde_json::Error> {
        let mut fields = self.job.clone();
        fields.insert("repository".into(), self.repository.clone().into());
        fields.insert("commit".into(), commit.into());
        let mut job: JobSpec = serde_json::from_value(serde_json::Value::Object(fields))?;
        job.callbacks.extend(self.callbacks.iter().cloned());
        if job.forge.is_none() {
            job.forge = self.forge.clone();
        }
        Ok(job)
    }

    /// Every problem, by field (`job.*` for the job template's).
    pub fn validate(&self, policy: &SpecPolicy) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, message: String| {
            problems.push(FieldProblem {
                field: field.to_owned(),
                message,
            })
        };
        match (&self.branch, &self.tag) {
            (Some(_), Some(_)) => problem(
                "tag",
                "set `branch` or `tag`, not both: a watch follows branches or tags".into(),
            ),
            (None, None) => problem(
                "branch",
                "missing: name the branch to follow (`main`), a glob (`release/*`), or set `tag` (`v*`)"
                    .into(),
            ),
            _ => {}
        }
        for (field, value) in [("branch", &self.branch), ("tag", &self.tag)] {
            let Some(value) = value else { continue };
            if value.is_empty()
                || value.starts_with('-')
                || value.starts_with("refs/")
                || value.contains("..")
                || value.chars().any(|c| c.is_control() || c == ' ')
            {
                problem(
                    field,
                    format!(
                        "`{}` is not a {field} name or glob (a short name such as `main` or `release/*`, without `refs/`)",
                        value.escape_debug()
                    ),
                );
            } else if let Err(e) = globset::Glob::new(value) {
                problem(
                    field,
                    format!("`{value}` is not a valid glob: {}", e.kind()),
                );
            }
        }
        if let Some(s) = self.poll_interval_s
            && s != 0
            && s < MIN_POLL_S
        {
            problem(
                "poll_interval_s",
                format!("{s} s is too often: at least {MIN_POLL_S} s, or 0 for webhooks only"),
            );
        }
        if self.sources.as_ref().is_some_and(Vec::is_empty) {
            problem(
                "sources",
                "empty: name at least one forge, or leave it out to accept all".into(),
            );
        }
        for reserved in ["repository", "commit"] {
            if self.job.contains_key(reserved) {
                problem(
                    &format!("job.{reserved}"),
                    "set by the watch: leave it out of the job".into(),
                );
            }
        }
        // The template must make a valid job for any commit.
        match self.job_for(&"0".repeat(40)) {
            Ok(job) => {
                for p in job.validate(policy) {
                    let field = if p.field == "repository" {
                        "repository".to_owned()
                    } else {
                        format!("job.{}", p.field)
                    };
                    problems.push(FieldProblem {
                        field,
                        message: p.message,
                    });
                }
            }
            Err(e) => problems.push(FieldProblem {
                field: "job".into(),
                message: format!("not a job spec: {e}"),
            }),
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> WatchSpec {
        serde_json::from_value(json).unwrap()
    }

    fn fields(s: &WatchSpec) -> Vec<String> {
        let policy = SpecPolicy {
            allow_local_paths: true,
            ..SpecPolicy::default()
        };
        s.validate(&policy).into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn branches_tags_and_globs_follow_full_ref_names() {
        let main = spec(serde_json::json!({"repository": "/r", "branch": "main"}));
        assert!(main.follows("refs/heads/main"));
        assert!(!main.follows("refs/heads/main2") && !main.follows("refs/tags/main"));
        let release = spec(serde_json::json!({"repository": "/r", "branch": "release/*"}));
        assert!(release.follows("refs/heads/release/1.2"));
        assert!(!release.follows("refs/heads/release/1.2/hotfix"));
        let tags = spec(serde_json::json!({"repository": "/r", "tag": "v*"}));
        assert!(tags.follows("refs/tags/v1.0") && !tags.follows("refs/heads/v1"));
        assert_eq!(main.poll_interval(), Some(DEFAULT_POLL_S));
    }

    #[test]
    fn every_problem_is_named_by_field() {
        let bad = spec(serde_json::json!({
            "repository": "/r",
            "branch": "refs/heads/main",
            "tag": "v*",
            "poll_interval_s": 3,
            "sources": [],
            "job": {"commit": "x", "tier": "full", "timeout_s": 0}
        }));
        let got = fields(&bad);
        for field in ["tag", "branch", "poll_interval_s", "sources", "job.commit"] {
            assert!(got.iter().any(|f| f == field), "{field} in {got:?}");
        }
        let unknown_job_field = spec(serde_json::json!({
            "repository": "/r", "branch": "main", "job": {"tierr": "full"}
        }));
        assert_eq!(fields(&unknown_job_field), ["job"]);
        let good = spec(serde_json::json!({
            "repository": "/r", "branch": "main", "poll_interval_s": 0,
            "job": {"tier": "full", "env": {"CI": "1"}}
        }));
        assert!(fields(&good).is_empty(), "{:?}", fields(&good));
        assert_eq!(good.poll_interval(), None);
        let job = good.job_for("abc").unwrap();
        assert_eq!(
            (job.repository.as_str(), job.commit.as_str()),
            ("/r", "abc")
        );
    }
}
