//! An error as a person needs to read it: with its causes. Many libraries'
//! errors say only their kind in `Display` ("db error", "error performing
//! TLS handshake", "client error (Connect)") and keep the reason (the
//! server's words, the certificate's fault) in `source()`.

/// `e` and its causes, `: `-joined; a cause whose text is already there is
/// not repeated.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner: {0}")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn causes_follow_and_repeats_are_dropped() {
        let e = Outer(Inner(std::io::Error::other("disk on fire")));
        // `inner` already carries the io error's text: it is not said twice.
        assert_eq!(with_causes(&e), "outer: inner: disk on fire");
    }
}
