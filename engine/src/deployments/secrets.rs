//! A deployment's secrets in its Compose file: `${NAME}` of a secret
//! interpolates to a marker, never to the value, and each marker must be a
//! whole `environment` value; it becomes that service's secret by reference,
//! read by the supervisor when it starts the container. So no value reaches
//! a managed service's stored spec, the deployment's record or the API.

use std::collections::BTreeMap;

use crate::compose::Stack;

/// The markers of one load: random, so a file cannot name one in advance.
pub(super) struct SecretMarkers<'a> {
    prefix: String,
    references: &'a BTreeMap<String, String>,
}

/// Per Compose service: environment variable → secret reference.
pub(super) type ServiceSecrets = BTreeMap<String, BTreeMap<String, String>>;

impl<'a> SecretMarkers<'a> {
    /// Markers for `references` (secret name → reference).
    pub(super) fn new(references: &'a BTreeMap<String, String>) -> SecretMarkers<'a> {
        SecretMarkers {
            prefix: format!("slipway-secret-{:016x}-", fastrand::u64(..)),
            references,
        }
    }

    /// The interpolation variables: `env`, and each secret as its marker.
    pub(super) fn vars(&self, env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut vars = env.clone();
        for name in self.references.keys() {
            vars.insert(name.clone(), self.marker(name));
        }
        vars
    }

    fn marker(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Takes every whole-value marker out of the services' environments
    /// and returns them as references; a marker left anywhere else (part of
    /// a value, a command, a label, ...) refuses the file.
    pub(super) fn extract(&self, stack: &mut Stack) -> Result<ServiceSecrets, String> {
        let mut by_service = ServiceSecrets::new();
        if self.references.is_empty() {
            return Ok(by_service);
        }
        for service in &mut stack.services {
            let mut secrets = BTreeMap::new();
            service.environment.retain(|variable, value| {
                let reference = value
                    .strip_prefix(&self.prefix)
                    .and_then(|name| self.references.get(name));
                match reference {
                    Some(reference) => {
                        secrets.insert(variable.clone(), reference.clone());
                        false
                    }
                    None => true,
                }
            });
            // Whatever holds a marker now uses a secret where its value
            // would be stored or shown: the whole resolved service is looked
            // at, so no field is forgotten.
            let rest = format!("{service:?}");
            if let Some(at) = rest.find(&self.prefix) {
                let name: String = rest[at + self.prefix.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                return Err(format!(
                    "service `{}` uses the secret `{name}` outside an `environment` value of its own; \
                     a secret may only be a whole value (`VARIABLE: ${{{name}}}`), so that it is never stored",
                    service.name
                ));
            }
            if !secrets.is_empty() {
                by_service.insert(service.name.clone(), secrets);
            }
        }
        let rest = format!("{:?}", stack.volumes);
        if rest.contains(&self.prefix) {
            return Err(
                "a volume's name uses a secret; secrets may only be `environment` values".into(),
            );
        }
        Ok(by_service)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn load(text: &str, markers: &SecretMarkers<'_>) -> Result<ServiceSecrets, String> {
        let vars = markers.vars(&BTreeMap::from([("TAG".to_owned(), "1".to_owned())]));
        let mut stack = crate::compose::parse(text, "compose.yaml", Path::new("/srv/app"), &vars)
            .map_err(|e| e.to_string())?;
        let secrets = markers.extract(&mut stack)?;
        assert!(
            !format!("{stack:?}").contains("slipway-secret-"),
            "no marker stays in the stack"
        );
        Ok(secrets)
    }

    #[test]
    fn a_whole_environment_value_becomes_a_reference() {
        let references = BTreeMap::from([("DB_PASSWORD".to_owned(), "env:PG_PW".to_owned())]);
        let markers = SecretMarkers::new(&references);
        let secrets = load(
            "services:\n  web:\n    image: app:${TAG}\n    environment:\n      PGPASSWORD: ${DB_PASSWORD}\n      PLAIN: x\n  db:\n    image: postgres\n    environment:\n      - POSTGRES_PASSWORD=${DB_PASSWORD}\n",
            &markers,
        )
        .unwrap();
        assert_eq!(
            secrets,
            BTreeMap::from([
                (
                    "db".to_owned(),
                    BTreeMap::from([("POSTGRES_PASSWORD".to_owned(), "env:PG_PW".to_owned())])
                ),
                (
                    "web".to_owned(),
                    BTreeMap::from([("PGPASSWORD".to_owned(), "env:PG_PW".to_owned())])
                ),
            ])
        );
    }

    #[test]
    fn a_secret_anywhere_else_is_refused_with_its_service_and_name() {
        let references = BTreeMap::from([("TOKEN".to_owned(), "file:/run/secrets/t".to_owned())]);
        let markers = SecretMarkers::new(&references);
        for (text, service) in [
            (
                "services:\n  web:\n    image: app\n    environment:\n      URL: https://u:${TOKEN}@host\n",
                "web",
            ),
            (
                "services:\n  worker:\n    image: app\n    command: [\"run\", \"--token=${TOKEN}\"]\n",
                "worker",
            ),
            (
                "services:\n  web:\n    image: app\n    labels:\n      t: ${TOKEN}\n",
                "web",
            ),
        ] {
            let e = load(text, &markers).unwrap_err();
            assert!(
                e.contains(&format!("service `{service}` uses the secret `TOKEN`")),
                "{e}"
            );
        }
    }

    #[test]
    fn no_secrets_leaves_the_stack_alone() {
        let references = BTreeMap::new();
        let markers = SecretMarkers::new(&references);
        let secrets = load(
            "services:\n  web:\n    image: app\n    environment:\n      A: ${TAG}\n",
            &markers,
        )
        .unwrap();
        assert!(secrets.is_empty());
    }
}
