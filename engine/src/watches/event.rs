//! What a verified delivery says happened. Only what decides whether to
//! look is read: the event (push or ping), the ref, and whether the ref was
//! deleted. The commit in the body is never used: the watch asks the
//! repository (`ls-remote`) what its ref points at, so a replayed or forged
//! body cannot choose what runs.

use serde::Deserialize;

use super::Forge;

/// The all-zero SHA forges send as `after` when a ref is deleted.
const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// A delivery, as far as a watch cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookEvent {
    /// The forge checks the hook is reachable.
    Ping,
    /// A ref was pushed to (created, moved, or `deleted`).
    Push {
        /// The full ref name (`refs/heads/main`, `refs/tags/v1`).
        reference: String,
        /// The push deleted the ref (its new commit is all zeros).
        deleted: bool,
    },
    /// Anything else (issues, pull requests, ...): its name, for the verdict.
    Other(String),
}

/// The body of a delivery that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the body is not a {forge} {what} event: {why}")]
pub struct MalformedEvent {
    /// Who signed the delivery.
    pub forge: super::Forge,
    /// The kind of body expected (`push`, `Standard Webhooks`).
    pub what: &'static str,
    /// The JSON parser's words.
    pub why: String,
}

#[derive(Deserialize)]
struct PushBody {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    deleted: Option<bool>,
}

#[derive(Deserialize)]
struct StandardBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, rename = "ref")]
    reference: Option<String>,
    #[serde(default)]
    deleted: bool,
}

/// Read the event of a verified delivery from `forge` (its event header
/// is `event`).
pub fn parse(forge: Forge, event: &str, body: &[u8]) -> Result<HookEvent, MalformedEvent> {
    let malformed = |what: &'static str, e: serde_json::Error| MalformedEvent {
        forge,
        what,
        why: e.to_string(),
    };
    match forge {
        Forge::Standard => {
            let b: StandardBody =
                serde_json::from_slice(body).map_err(|e| malformed("Standard Webhooks", e))?;
            Ok(match (b.kind.as_str(), b.reference) {
                ("ping", _) => HookEvent::Ping,
                ("push", Some(reference)) => HookEvent::Push {
                    reference,
                    deleted: b.deleted,
                },
                (other, _) => HookEvent::Other(other.to_owned()),
            })
        }
        Forge::Github | Forge::Gitea | Forge::Forgejo if event == "ping" => Ok(HookEvent::Ping),
        Forge::Gitlab if event == "Push Hook" || event == "Tag Push Hook" => {
            push(body).map_err(|e| malformed("push", e))
        }
        Forge::Github | Forge::Gitea | Forge::Forgejo if event == "push" => {
            push(body).map_err(|e| malformed("push", e))
        }
        _ => Ok(HookEvent::Other(if event.is_empty() {
            "unnamed".to_owned()
        } else {
            event.to_owned()
        })),
    }
}

fn push(body: &[u8]) -> Result<HookEvent, serde_json::Error> {
    let b: PushBody = serde_json::from_slice(body)?;
    let deleted = b.deleted.unwrap_or(false) || b.after.as_deref() == Some(ZERO_SHA);
    Ok(HookEvent::Push {
        reference: b.reference,
        deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_pings_and_deletions_of_each_forge() {
        let gh = br#"{"ref":"refs/heads/main","after":"1111111111111111111111111111111111111111","deleted":false}"#;
        assert_eq!(
            parse(Forge::Github, "push", gh).unwrap(),
            HookEvent::Push {
                reference: "refs/heads/main".into(),
                deleted: false
            }
        );
        assert_eq!(
            parse(Forge::Github, "ping", b"{\"zen\":\"x\"}").unwrap(),
            HookEvent::Ping
        );
        let gl_delete = br#"{"object_kind":"tag_push","ref":"refs/tags/v1","after":"0000000000000000000000000000000000000000"}"#;
        assert_eq!(
            parse(Forge::Gitlab, "Tag Push Hook", gl_delete).unwrap(),
            HookEvent::Push {
                reference: "refs/tags/v1".into(),
                deleted: true
            }
        );
        assert_eq!(
            parse(Forge::Gitea, "issues", b"{}").unwrap(),
            HookEvent::Other("issues".into())
        );
        assert_eq!(
            parse(
                Forge::Standard,
                "",
                br#"{"type":"push","ref":"refs/heads/dev"}"#
            )
            .unwrap(),
            HookEvent::Push {
                reference: "refs/heads/dev".into(),
                deleted: false
            }
        );
        let e = parse(Forge::Github, "push", b"not json").unwrap_err();
        assert!(e.to_string().contains("not a github push event"), "{e}");
    }
}
