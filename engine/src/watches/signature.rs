//! Who sent a webhook, checked the way each forge signs: GitHub's
//! `X-Hub-Signature-256` (HMAC-SHA256 of the raw body), GitLab's
//! `X-Gitlab-Token` (the secret itself), Gitea's and Forgejo's
//! `X-Gitea-Signature` / `X-Forgejo-Signature` (hex HMAC-SHA256 of the
//! body), and the Standard Webhooks headers (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64>` over
//! `<id>.<timestamp>.<body>`, the timestamp within 5 minutes) for anything
//! else. Every comparison is constant-time.
//!
//! A watch's secret is `whsec_<base64>`: forges that take a typed secret
//! use the whole string as their key; Standard Webhooks uses the decoded
//! bytes after the prefix, as its specification says.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::Forge;

/// How far a Standard Webhooks timestamp may be from the engine's clock.
pub const TOLERANCE_S: i64 = 300;

/// The headers of a delivery, by lower-case name.
pub trait Headers {
    /// The value of `name` (lower case), if present and text.
    fn get(&self, name: &str) -> Option<&str>;
}

impl Headers for axum::http::HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        axum::http::HeaderMap::get(self, name).and_then(|v| v.to_str().ok())
    }
}

impl Headers for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// A delivery whose signature holds: who sent it, and the forge's own
/// name for the event and the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Whose signature it carries.
    pub forge: Forge,
    /// The forge's event name (`push`, `ping`, `Push Hook`, ...); empty for
    /// Standard Webhooks, whose event is in the body.
    pub event: String,
    /// The forge's id of this delivery, for deduplication; `None` when it
    /// sends none.
    pub delivery: Option<String>,
}

/// Why a delivery was refused (answered 401, nothing submitted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The signature does not match the watch's secret.
    #[error("bad signature ({forge} `{header}` does not match the watch's secret)")]
    BadSignature {
        /// Whose scheme the signature followed.
        forge: Forge,
        /// The header that carried it.
        header: &'static str,
    },
    /// A valid signature from a forge the watch does not accept.
    #[error("{forge} deliveries are not accepted by this watch (it accepts: {accepted})")]
    ForgeNotAccepted {
        /// Who signed it.
        forge: Forge,
        /// The watch's `sources`, comma-separated.
        accepted: String,
    },
    /// No signature header of any known scheme.
    #[error(
        "no signature: send one of X-Hub-Signature-256 (GitHub), X-Gitlab-Token (GitLab), X-Gitea-Signature or X-Forgejo-Signature (Gitea, Forgejo), or the Standard Webhooks headers webhook-id, webhook-timestamp, webhook-signature"
    )]
    Unsigned,
    /// A signature header that cannot be read.
    #[error("malformed `{header}` header: {why}")]
    Malformed {
        /// The header.
        header: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// A Standard Webhooks timestamp outside the tolerance.
    #[error(
        "the webhook-timestamp is {age_s} s away from the engine's clock (at most {TOLERANCE_S} s): a replay, or a clock to fix"
    )]
    Stale {
        /// Seconds between the timestamp and the engine's clock.
        age_s: i64,
    },
}

/// Check `body` against the headers of whichever forge sent it; `now_s` is
/// the engine's clock (Unix seconds) for Standard Webhooks timestamps.
pub fn verify(
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    secret: &str,
    accepted: &[Forge],
    now_s: i64,
) -> Result<Verified, Rejected> {
    let (forge, checked) = if let Some(sig) = headers.get("x-hub-signature-256") {
        (Forge::Github, github(sig, body, secret))
    } else if let Some(token) = headers.get("x-gitlab-token") {
        (Forge::Gitlab, gitlab(token, secret))
    } else if let Some(sig) = headers.get("x-forgejo-signature") {
        (
            Forge::Forgejo,
            gitea(sig, body, secret, "X-Forgejo-Signature"),
        )
    } else if let Some(sig) = headers.get("x-gitea-signature") {
        (Forge::Gitea, gitea(sig, body, secret, "X-Gitea-Signature"))
    } else if headers.get("webhook-signature").is_some() {
        (Forge::Standard, standard(headers, body, secret, now_s))
    } else {
        return Err(Rejected::Unsigned);
    };
    checked?;
    if !accepted.contains(&forge) {
        return Err(Rejected::ForgeNotAccepted {
            forge,
            accepted: accepted
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let (event, delivery) = match forge {
        Forge::Github => (
            headers.get("x-github-event"),
            headers.get("x-github-delivery"),
        ),
        Forge::Gitlab => (
            headers.get("x-gitlab-event"),
            headers
                .get("x-gitlab-webhook-uuid")
                .or_else(|| headers.get("x-gitlab-event-uuid"))
                .or_else(|| headers.get("idempotency-key")),
        ),
        Forge::Gitea => (
            headers.get("x-gitea-event"),
            headers.get("x-gitea-delivery"),
        ),
        Forge::Forgejo => (
            headers.get("x-forgejo-event"),
            headers.get("x-forgejo-delivery"),
        ),
        Forge::Standard => (None, headers.get("webhook-id")),
    };
    Ok(Verified {
        forge,
        event: event.unwrap_or_default().to_owned(),
        delivery: delivery.filter(|d| !d.is_empty()).map(str::to_owned),
    })
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length")
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body).
fn github(header: &str, body: &[u8], secret: &str) -> Result<(), Rejected> {
    let malformed = |why: &str| Rejected::Malformed {
        header: "X-Hub-Signature-256",
        why: why.to_owned(),
    };
    let hex_sig = header
        .strip_prefix("sha256=")
        .ok_or_else(|| malformed("expected `sha256=<hex>`"))?;
    let given = hex::decode(hex_sig).map_err(|_| malformed("not hex"))?;
    let mut m = mac(secret.as_bytes());
    m.update(body);
    m.verify_slice(&given).map_err(|_| Rejected::BadSignature {
        forge: Forge::Github,
        header: "X-Hub-Signature-256",
    })
}

/// GitLab sends the secret itself.
fn gitlab(token: &str, secret: &str) -> Result<(), Rejected> {
    if bool::from(token.as_bytes().ct_eq(secret.as_bytes())) {
        Ok(())
    } else {
        Err(Rejected::BadSignature {
            forge: Forge::Gitlab,
            header: "X-Gitlab-Token",
        })
    }
}

/// Hex HMAC-SHA256(secret, body), no prefix.
fn gitea(header: &str, body: &[u8], secret: &str, name: &'static str) -> Result<(), Rejected> {
    let given = hex::decode(header.trim()).map_err(|_| Rejected::Malformed {
        header: name,
        why: "not hex".into(),
    })?;
    let mut m = mac(secret.as_bytes());
    m.update(body);
    m.verify_slice(&given).map_err(|_| Rejected::BadSignature {
        forge: if name == "X-Forgejo-Signature" {
            Forge::Forgejo
        } else {
            Forge::Gitea
        },
        header: name,
    })
}

/// The key of a `whsec_<base64>` secret (the whole secret's bytes when it
/// is not of that form).
pub fn standard_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// The Standard Webhooks signature of a message: `v1,<base64>`.
pub fn standard_signature(secret: &str, id: &str, timestamp_s: i64, body: &[u8]) -> String {
    let mut m = mac(&standard_key(secret));
    m.update(format!("{id}.{timestamp_s}.").as_bytes());
    m.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
    )
}

fn standard(
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    secret: &str,
    now_s: i64,
) -> Result<(), Rejected> {
    let missing = |header: &'static str| Rejected::Malformed {
        header,
        why:
            "missing (Standard Webhooks needs webhook-id, webhook-timestamp and webhook-signature)"
                .into(),
    };
    let id = headers.get("webhook-id").ok_or(missing("webhook-id"))?;
    let timestamp = headers
        .get("webhook-timestamp")
        .ok_or(missing("webhook-timestamp"))?;
    let signatures = headers
        .get("webhook-signature")
        .ok_or(missing("webhook-signature"))?;
    let timestamp_s: i64 = timestamp.trim().parse().map_err(|_| Rejected::Malformed {
        header: "webhook-timestamp",
        why: "not Unix seconds".into(),
    })?;
    let age_s = (now_s - timestamp_s).abs();
    if age_s > TOLERANCE_S {
        return Err(Rejected::Stale { age_s });
    }
    let mut m = mac(&standard_key(secret));
    m.update(format!("{id}.{timestamp_s}.").as_bytes());
    m.update(body);
    let expected = m.finalize().into_bytes();
    let matches = signatures.split_whitespace().any(|entry| {
        entry
            .strip_prefix("v1,")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|given| bool::from(given.as_slice().ct_eq(expected.as_slice())))
    });
    if matches {
        Ok(())
    } else {
        Err(Rejected::BadSignature {
            forge: Forge::Standard,
            header: "webhook-signature",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ALL: [Forge; 5] = [
        Forge::Github,
        Forge::Gitlab,
        Forge::Gitea,
        Forge::Forgejo,
        Forge::Standard,
    ];

    fn hmac_hex(secret: &str, body: &[u8]) -> String {
        let mut m = mac(secret.as_bytes());
        m.update(body);
        hex::encode(m.finalize().into_bytes())
    }

    #[test]
    fn github_signs_the_raw_body() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let sig = format!("sha256={}", hmac_hex(SECRET, body));
        let headers: &[(&str, &str)] = &[
            ("X-Hub-Signature-256", &sig),
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "d-1"),
        ];
        let v = verify(headers, body, SECRET, &ALL, 0).unwrap();
        assert_eq!(
            (v.forge, v.event.as_str(), v.delivery.as_deref()),
            (Forge::Github, "push", Some("d-1"))
        );
        // One byte changed, or another secret: refused.
        assert!(matches!(
            verify(headers, br#"{"ref":"refs/heads/evil"}"#, SECRET, &ALL, 0),
            Err(Rejected::BadSignature { .. })
        ));
        assert!(matches!(
            verify(headers, body, "whsec_other", &ALL, 0),
            Err(Rejected::BadSignature { .. })
        ));
        let bad: &[(&str, &str)] = &[("X-Hub-Signature-256", "md5=00")];
        assert!(matches!(
            verify(bad, body, SECRET, &ALL, 0),
            Err(Rejected::Malformed { .. })
        ));
    }

    #[test]
    fn gitlab_sends_the_token_gitea_and_forgejo_sign_in_hex() {
        let body = b"{}";
        let gl: &[(&str, &str)] = &[("X-Gitlab-Token", SECRET), ("X-Gitlab-Event", "Push Hook")];
        assert_eq!(
            verify(gl, body, SECRET, &ALL, 0).unwrap().forge,
            Forge::Gitlab
        );
        let wrong: &[(&str, &str)] = &[("X-Gitlab-Token", "guess")];
        assert!(verify(wrong, body, SECRET, &ALL, 0).is_err());
        let sig = hmac_hex(SECRET, body);
        let gitea: &[(&str, &str)] = &[("X-Gitea-Signature", &sig), ("X-Gitea-Delivery", "g-1")];
        assert_eq!(
            verify(gitea, body, SECRET, &ALL, 0).unwrap().forge,
            Forge::Gitea
        );
        let forgejo: &[(&str, &str)] = &[("X-Forgejo-Signature", &sig)];
        assert_eq!(
            verify(forgejo, body, SECRET, &ALL, 0).unwrap().forge,
            Forge::Forgejo
        );
        // A watch that accepts GitHub only refuses a valid GitLab delivery.
        assert!(matches!(
            verify(gl, body, SECRET, &[Forge::Github], 0),
            Err(Rejected::ForgeNotAccepted { .. })
        ));
        assert_eq!(
            verify(&[][..], body, SECRET, &ALL, 0),
            Err(Rejected::Unsigned)
        );
    }

    #[test]
    fn standard_webhooks_sign_id_timestamp_and_body_within_five_minutes() {
        let body = br#"{"type":"push"}"#;
        let now = 1_796_000_000;
        let sig = standard_signature(SECRET, "msg_1", now, body);
        let ts = now.to_string();
        let headers: &[(&str, &str)] = &[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &format!("v1,AAAA {sig}")),
        ];
        let v = verify(headers, body, SECRET, &ALL, now + 10).unwrap();
        assert_eq!(
            (v.forge, v.delivery.as_deref()),
            (Forge::Standard, Some("msg_1"))
        );
        // Ten minutes later the same delivery is a replay.
        assert_eq!(
            verify(headers, body, SECRET, &ALL, now + 600),
            Err(Rejected::Stale { age_s: 600 })
        );
        // The id is signed: another id with the same signature fails.
        let other: &[(&str, &str)] = &[
            ("webhook-id", "msg_2"),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &sig),
        ];
        assert!(matches!(
            verify(other, body, SECRET, &ALL, now),
            Err(Rejected::BadSignature { .. })
        ));
    }

    #[test]
    fn the_standard_key_is_the_decoded_secret() {
        // The Standard Webhooks specification's example secret and message.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let sig = standard_signature(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
