//! TLS to PostgreSQL, as the `store` URL asks for it with libpq's own
//! parameters: `sslmode` (whether) and `sslrootcert` (a PEM file of
//! authorities to trust beside the public roots, for a private CA).
//!
//! Whenever TLS is used, the server's certificate is verified, chain and
//! host name alike (libpq's `verify-full`), whatever `sslmode` says: the
//! store holds every job, token hash and secret reference, so a connection
//! that anyone in the middle could read is not offered. Without `sslmode`
//! or `sslrootcert` the connection stays plain, as before TLS existed here.

use std::path::Path;
use std::str::FromStr;

use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::queue::store::StoreError;

/// How every connection of a store is made.
pub type Connector = MakeRustlsConnect;

/// The connection settings of `url` (a libpq URL or key=value string) and
/// the TLS connector its `sslmode` and `sslrootcert` ask for.
pub fn settings(url: &str) -> Result<(tokio_postgres::Config, Connector), StoreError> {
    let (rest, tls) = take_tls_parameters(url);
    let mut config = tokio_postgres::Config::from_str(&rest).map_err(|e| StoreError::Open {
        path: "the PostgreSQL URL in `store`".into(),
        message: e.to_string(),
        hint: "write it as postgres://user:password@host:port/database[?sslmode=require&sslrootcert=/path/ca.pem]",
    })?;
    let mode = match tls.mode.as_deref() {
        None if tls.root_cert.is_some() => SslMode::Require,
        None | Some("disable") => SslMode::Disable,
        Some("allow" | "prefer") => SslMode::Prefer,
        Some("require" | "verify-ca" | "verify-full") => SslMode::Require,
        Some(other) => {
            return Err(StoreError::Open {
                path: "the PostgreSQL URL in `store`".into(),
                message: format!("sslmode `{other}` is not one libpq knows"),
                hint: "use sslmode=disable, prefer, require, verify-ca or verify-full (with TLS the certificate is always verified)",
            });
        }
    };
    config.ssl_mode(mode);
    let roots = crate::tls::trust_roots(tls.root_cert.as_deref().map(Path::new)).map_err(
        |message| StoreError::Open {
            path: format!("sslrootcert {}", tls.root_cert.as_deref().unwrap_or_default()),
            message,
            hint: "point sslrootcert at a readable PEM file of the authorities that sign the database's certificate",
        },
    )?;
    let client = crate::tls::client_config(roots);
    Ok((config, MakeRustlsConnect::new(client)))
}

/// The TLS parameters of a connection string, taken out of it: the
/// driver knows `sslmode` only as `disable`, `prefer` and `require`, and
/// `sslrootcert` not at all.
#[derive(Debug, Default, PartialEq, Eq)]
struct TlsParameters {
    mode: Option<String>,
    root_cert: Option<String>,
}

fn take_tls_parameters(url: &str) -> (String, TlsParameters) {
    let mut tls = TlsParameters::default();
    let mut keep = |key: &str, value: &str| -> bool {
        match key {
            "sslmode" => tls.mode = Some(value.to_owned()),
            "sslrootcert" => tls.root_cert = Some(value.to_owned()),
            _ => return true,
        }
        false
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                        keep(key, &percent_decoded(value))
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_owned(),
        }
    } else {
        url.split_whitespace()
            .filter(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                keep(key.trim(), value.trim_matches('\''))
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    (rest, tls)
}

/// `%XX` escapes decoded (a path in a URL may carry them).
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| value.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_both_forms() {
        let (rest, tls) = take_tls_parameters(
            "postgres://u:p@db:5432/slipway?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        );
        assert_eq!(rest, "postgres://u:p@db:5432/slipway?application_name=x");
        assert_eq!(tls.mode.as_deref(), Some("verify-full"));
        assert_eq!(tls.root_cert.as_deref(), Some("/etc/ca.pem"));

        let (rest, tls) = take_tls_parameters("postgres://u@db/slipway?sslmode=require");
        assert_eq!(rest, "postgres://u@db/slipway");
        assert_eq!(tls.mode.as_deref(), Some("require"));

        let (rest, tls) =
            take_tls_parameters("host=db user=u sslrootcert='/etc/ca.pem' dbname=slipway");
        assert_eq!(rest, "host=db user=u dbname=slipway");
        assert_eq!(tls.root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(tls.mode, None);

        let (rest, tls) = take_tls_parameters("postgres://u@db/slipway");
        assert_eq!(
            (rest.as_str(), tls),
            ("postgres://u@db/slipway", TlsParameters::default())
        );
    }

    #[test]
    fn modes_map_to_the_driver_and_bad_input_is_named() {
        let mode = |url: &str| settings(url).unwrap().0.get_ssl_mode();
        assert_eq!(mode("postgres://u@db/s"), SslMode::Disable);
        assert_eq!(mode("postgres://u@db/s?sslmode=prefer"), SslMode::Prefer);
        assert_eq!(
            mode("postgres://u@db/s?sslmode=verify-ca"),
            SslMode::Require
        );

        let err = settings("postgres://u@db/s?sslmode=always")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("sslmode `always`") && err.contains("verify-full"),
            "{err}"
        );
        let err = settings("postgres://u@db/s?sslrootcert=/nonexistent/ca.pem")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("sslrootcert /nonexistent/ca.pem"), "{err}");
        let empty = tempfile::NamedTempFile::new().unwrap();
        let err = settings(&format!(
            "postgres://u@db/s?sslrootcert={}",
            empty.path().display()
        ))
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("no usable certificate"), "{err}");
    }
}
