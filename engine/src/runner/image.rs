//! Image resolution: build a job's image once and reuse it by content hash.
//!
//! The tag is `slipway-runner/<repo-slug>:<hash>`, where the hash covers the
//! Dockerfile text (after the base-image map is applied) and every file the
//! build reads: for a generated Dockerfile, the files its `COPY`/`ADD` lines
//! name (manifests, lockfiles, version hints); for a repository's own
//! Dockerfile, the whole build context (less `.git` and what `.dockerignore`
//! leaves out). An existing tag is a
//! cache hit and nothing is built. Builds use the classic builder.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::LABEL_MANAGED;
use super::build_hints::{self, BuildSigns};
use crate::logs::{JobLog, LogStream};
use crate::runtime::{BuildEvent, BuildSpec, Runtime};

/// Where the Dockerfile comes from.
#[derive(Debug, Clone)]
pub enum DockerfileSource {
    /// Text from an ecosystem plugin's plan.
    Generated(String),
    /// A path inside the checkout.
    Repository(PathBuf),
}

/// What [`resolve`] needs to find or build one job's image.
#[derive(Debug, Clone)]
pub struct ImageRequest<'a> {
    /// Names the image repository: `slipway-runner/<slug>`.
    pub repo_slug: &'a str,
    /// The plan's generated Dockerfile, or the repository's own.
    pub dockerfile: DockerfileSource,
    /// The job's checkout (the build context).
    pub checkout: &'a Path,
    /// Official base-image names mapped to mirrors (config `base_images`).
    pub base_images: &'a BTreeMap<String, String>,
    /// `none`, or `host` where builds need the network and there is no bridge.
    pub network: &'a str,
    /// An extra CA bundle (PEM) for generated images' package managers.
    pub ca_bundle: Option<&'a [u8]>,
    /// Build arguments and target stage (a Compose service's `build:`).
    pub build: BuildOptions,
}

/// `--build-arg`s and `--target` of a build; part of the image's hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// `--build-arg` values.
    pub args: BTreeMap<String, String>,
    /// The stage to build.
    pub target: Option<String>,
}

/// Where an extra CA bundle lives in images and job containers, and the
/// variables that point package managers and TLS libraries at it.
pub const CA_BUNDLE_PATH: &str = "/etc/ssl/certs/slipway-ca-bundle.pem";
/// Variables set to [`CA_BUNDLE_PATH`] in generated images and job containers
/// when a CA bundle is configured.
pub const CA_BUNDLE_VARIABLES: &[&str] = &[
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "CARGO_HTTP_CAINFO",
    "BUNDLE_SSL_CA_CERT",
    "GIT_SSL_CAINFO",
];
/// Name of the bundle in a build context.
const CA_BUNDLE_CONTEXT_NAME: &str = ".slipway-ca-bundle.pem";

/// Add the CA bundle to every stage of a generated Dockerfile, right after
/// its `FROM`, so every `RUN` that fetches dependencies trusts it.
pub fn with_ca_bundle(dockerfile: &str) -> String {
    let env: Vec<String> = CA_BUNDLE_VARIABLES
        .iter()
        .map(|v| format!("{v}={CA_BUNDLE_PATH}"))
        .collect();
    let mut out = String::new();
    for line in dockerfile.lines() {
        out.push_str(line);
        out.push('\n');
        let word = line.split_whitespace().next().unwrap_or("");
        if word.eq_ignore_ascii_case("FROM") {
            out.push_str(&format!(
                "COPY {CA_BUNDLE_CONTEXT_NAME} {CA_BUNDLE_PATH}\nENV {}\n",
                env.join(" ")
            ));
        }
    }
    out
}

/// The image a job runs in, found by content hash or just built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// `slipway-runner/<repo-slug>:<hash>`, 16 hex digits of the content hash.
    pub tag: String,
    /// The image's id (`sha256:…`).
    pub id: String,
    /// The tag existed already and nothing was built.
    pub hit: bool,
    /// How long the build took; zero on a hit.
    pub build_time: Duration,
}

/// Why a job's image could not be had; the job (or workspace) fails, not retried.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A build input is unusable: a file of the context cannot be read, a `COPY`
    /// source leaves the repository, or `.dockerignore` does not parse.
    #[error("{path}: {message}")]
    Input {
        /// The file (or `COPY` source) at fault.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The build ran and failed.
    #[error("building {tag} failed: {message}{}", hint.as_deref().map(|h| format!("; {h}")).unwrap_or_default())]
    Build {
        /// The tag that was being built.
        tag: String,
        /// The daemon's error, then up to the last 20 lines of build output.
        message: String,
        /// What would help, when the output says (see `build_hints`).
        hint: Option<String>,
    },
}

/// Apply the base-image map to every `FROM` line.
pub fn map_base_images(dockerfile: &str, map: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(dockerfile.len());
    for line in dockerfile.lines() {
        let mut words: Vec<&str> = line.split_whitespace().collect();
        if words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
            && let Some(i) = words
                .iter()
                .skip(1)
                .position(|w| !w.starts_with("--"))
                .map(|i| i + 1)
            && let Some(mirror) = map.get(words[i])
        {
            words[i] = mirror;
            out.push_str(&words.join(" "));
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Source paths of `COPY`/`ADD` lines (without `--flags` and the destination).
pub fn copied_paths(dockerfile: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for line in dockerfile.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if !words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("COPY") || w.eq_ignore_ascii_case("ADD"))
        {
            continue;
        }
        let args: Vec<&str> = words[1..]
            .iter()
            .copied()
            .filter(|w| !w.starts_with("--"))
            .collect();
        // The JSON form, `COPY ["a", "b", "./"]`, allows spaces in names.
        let joined = args.join(" ");
        let args: Vec<String> = match serde_json::from_str::<Vec<String>>(&joined) {
            Ok(list) if joined.starts_with('[') => list,
            _ => args.iter().map(|s| s.to_string()).collect(),
        };
        if args.len() >= 2 {
            paths.extend(args[..args.len() - 1].iter().cloned());
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

fn input_error(path: &Path, e: impl std::fmt::Display) -> ImageError {
    ImageError::Input {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// A `.dockerignore` line that is not a valid pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(".dockerignore line {line}: `{text}`: {reason}")]
pub struct DockerIgnoreError {
    /// 1-based line number in `.dockerignore`.
    pub line: usize,
    /// The line, trimmed.
    pub text: String,
    /// Why the pattern is not a valid glob.
    pub reason: String,
}

/// The patterns of a build context's `.dockerignore`, in order: a path is
/// left out when the last pattern matching it (or one of its folders) is
/// not an exception (`!`).
#[derive(Debug)]
pub struct DockerIgnore {
    patterns: Vec<(globset::GlobMatcher, bool)>,
}

impl DockerIgnore {
    /// Parse `.dockerignore` text; blank lines and `#` comments are skipped,
    /// the first invalid pattern is an error.
    pub fn parse(text: &str) -> Result<DockerIgnore, DockerIgnoreError> {
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negate, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
            let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
            if pattern.is_empty() {
                continue;
            }
            let glob = globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| DockerIgnoreError {
                    line: i + 1,
                    text: line.to_owned(),
                    reason: e.kind().to_string(),
                })?;
            patterns.push((glob.compile_matcher(), negate));
        }
        Ok(DockerIgnore { patterns })
    }

    /// Whether `rel` (a path inside the context) is left out.
    pub fn excludes(&self, rel: &str) -> bool {
        let mut excluded = false;
        for (glob, negate) in &self.patterns {
            // A pattern that matches a folder covers what is inside it.
            let mut prefix = String::new();
            let mut matched = false;
            for part in rel.split('/') {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                if glob.is_match(&prefix) {
                    matched = true;
                    break;
                }
            }
            if matched {
                excluded = !negate;
            }
        }
        excluded
    }
}

/// Files of the build context, relative, sorted; `.git` left out; symlinks
/// that leave the checkout refused.
fn context_files(
    root: &Path,
    wanted: Option<&[String]>,
) -> Result<Vec<(String, PathBuf)>, ImageError> {
    let mut out = Vec::new();
    match wanted {
        Some(list) => {
            for rel in list {
                if rel.starts_with('/') || rel.split('/').any(|c| c == "..") {
                    return Err(ImageError::Input {
                        path: rel.clone(),
                        message: "COPY source leaves the repository".into(),
                    });
                }
                let path = root.join(rel);
                if path.is_file() {
                    out.push((rel.trim_start_matches("./").to_owned(), path));
                }
            }
        }
        None => {
            walk(root, root, &mut out)?;
            // As the Docker CLI does: `.dockerignore` leaves paths out of
            // the context (and so out of the image's hash).
            let ignore_file = root.join(".dockerignore");
            if ignore_file.is_file() {
                let text = std::fs::read_to_string(&ignore_file)
                    .map_err(|e| input_error(&ignore_file, e))?;
                let ignore = DockerIgnore::parse(&text).map_err(|e| ImageError::Input {
                    path: ignore_file.display().to_string(),
                    message: e.to_string(),
                })?;
                out.retain(|(rel, _)| !ignore.excludes(rel));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), ImageError> {
    for entry in std::fs::read_dir(dir).map_err(|e| input_error(dir, e))? {
        let entry = entry.map_err(|e| input_error(dir, e))?;
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == ".git") {
            continue;
        }
        let kind = entry.file_type().map_err(|e| input_error(&path, e))?;
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() || kind.is_symlink() {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            out.push((rel, path));
        }
    }
    Ok(())
}

/// The tar build context and the content hash of everything in it
/// (`extra`: files that are not in the checkout, such as the CA bundle).
fn context(
    dockerfile: &str,
    files: &[(String, PathBuf)],
    extra: &[(&str, &[u8])],
) -> Result<(Vec<u8>, String), ImageError> {
    let mut hasher = Sha256::new();
    hasher.update(b"dockerfile\0");
    hasher.update(dockerfile.as_bytes());
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, ".slipway.Dockerfile", dockerfile.as_bytes())
        .map_err(|e| input_error(Path::new("Dockerfile"), e))?;
    for (rel, path) in files {
        hasher.update(rel.as_bytes());
        hasher.update(b"\0");
        let meta = std::fs::symlink_metadata(path).map_err(|e| input_error(path, e))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(path).map_err(|e| input_error(path, e))?;
            hasher.update(target.to_string_lossy().as_bytes());
        } else {
            hasher.update(std::fs::read(path).map_err(|e| input_error(path, e))?);
        }
        tar.append_path_with_name(path, rel)
            .map_err(|e| input_error(path, e))?;
    }
    for (name, bytes) in extra {
        hasher.update(name.as_bytes());
        hasher.update(b"\0");
        hasher.update(bytes);
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, *bytes)
            .map_err(|e| input_error(Path::new(name), e))?;
    }
    let bytes = tar
        .into_inner()
        .map_err(|e| input_error(Path::new("context"), e))?;
    Ok((bytes, hex::encode(&hasher.finalize()[..8])))
}

/// `s` as one component of an image name: lowercase letters and digits,
/// runs of anything else as a single `-`, no separator at either end.
pub fn name_component(s: &str) -> String {
    let mut out = String::new();
    for c in s.to_ascii_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() { "repo".into() } else { out }
}

/// The Dockerfile that layers a plan's dependency installation
/// (`deps_layer`) on top of the repository's own image `base` (as root).
pub fn deps_layer_dockerfile(base: &str, layer: &str) -> String {
    format!("FROM {base}\nUSER root\n{layer}")
}

/// The tag [`resolve`] finds or builds for `request`
/// (`slipway-runner/<slug>:<hash>`), without asking any container engine:
/// what a Kubernetes manifest names, for a registry to hold.
pub fn content_tag(request: &ImageRequest<'_>) -> Result<String, ImageError> {
    build_context(request).map(|c| c.tag)
}

/// What a build of `request` sends, and the tag it gets.
struct BuildContext {
    /// The Dockerfile as built (base images mapped, CA bundle added).
    text: String,
    /// The tar build context.
    tar: Vec<u8>,
    /// `slipway-runner/<slug>:<hash>`.
    tag: String,
}

fn build_context(request: &ImageRequest<'_>) -> Result<BuildContext, ImageError> {
    let mut extra: Vec<(&str, &[u8])> = Vec::new();
    let (text, files) = match &request.dockerfile {
        DockerfileSource::Generated(text) => {
            let mut text = map_base_images(text, request.base_images);
            let files = context_files(request.checkout, Some(&copied_paths(&text)))?;
            if let Some(bundle) = request.ca_bundle {
                text = with_ca_bundle(&text);
                extra.push((CA_BUNDLE_CONTEXT_NAME, bundle));
            }
            (text, files)
        }
        DockerfileSource::Repository(rel) => {
            let path = request.checkout.join(rel);
            let text = std::fs::read_to_string(&path).map_err(|e| input_error(&path, e))?;
            (
                map_base_images(&text, request.base_images),
                context_files(request.checkout, None)?,
            )
        }
    };
    // Arguments and target shape the image as much as the files do.
    let options = (request.build != BuildOptions::default())
        .then(|| format!("{:?}", request.build).into_bytes());
    if let Some(options) = &options {
        extra.push((".slipway.build-options", options));
    }
    let (tar, hash) = context(&text, &files, &extra)?;
    let tag = format!(
        "slipway-runner/{}:{hash}",
        name_component(request.repo_slug)
    );
    Ok(BuildContext { text, tar, tag })
}

/// The job's image: reused when its content hash is already built.
pub async fn resolve(
    runtime: &Runtime,
    request: &ImageRequest<'_>,
    log: &JobLog,
) -> Result<ResolvedImage, ImageError> {
    let BuildContext { text, tar, tag } = build_context(request)?;
    if let Ok(Some(id)) = runtime.image_id(&tag).await {
        log.line(LogStream::Engine, &format!("image {tag}: cache hit"));
        return Ok(ResolvedImage {
            id,
            tag,
            hit: true,
            build_time: Duration::ZERO,
        });
    }
    log.line(LogStream::Engine, &format!("image {tag}: building"));
    let started = Instant::now();
    let build = BuildSpec {
        context: tar,
        dockerfile: ".slipway.Dockerfile".into(),
        tag: tag.clone(),
        network: request.network.to_owned(),
        labels: HashMap::from([(LABEL_MANAGED.to_owned(), "true".to_owned())]),
        args: request.build.args.clone().into_iter().collect(),
        target: request.build.target.clone(),
    };
    let mut stream = runtime.build_image(build);
    let mut tail: Vec<String> = Vec::new();
    let mut signs = BuildSigns::default();
    while let Some(event) = stream.next().await {
        let error = match event {
            BuildEvent::Output(text) => {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    log.line(LogStream::Build, line);
                    signs.read(line);
                    tail.push(line.to_owned());
                    if tail.len() > 20 {
                        tail.remove(0);
                    }
                }
                continue;
            }
            BuildEvent::Failed(error) => error,
        };
        signs.read(&error);
        let mut missing = Vec::new();
        for base in build_hints::base_images(&text) {
            if !matches!(runtime.image_id(&base).await, Ok(Some(_))) {
                missing.push(base);
            }
        }
        return Err(ImageError::Build {
            tag,
            message: format!("{error} (last output: {})", tail.join(" | ")),
            hint: signs.hint(&missing, request.ca_bundle.is_some(), request.network),
        });
    }
    let build_time = started.elapsed();
    log.line(
        LogStream::Engine,
        &format!("image {tag}: built in {:.1} s", build_time.as_secs_f64()),
    );
    let id = runtime
        .image_id(&tag)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    Ok(ResolvedImage {
        tag,
        id,
        hit: false,
        build_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_map_and_copy_sources() {
        let map = BTreeMap::from([(
            "node:18-slim".to_owned(),
            "mirror.example/node:18-slim".to_owned(),
        )]);
        let text = "FROM --platform=linux/amd64 node:18-slim AS base\nCOPY --chown=node:node package.json package-lock.json ./\nADD a b /x/\nRUN npm ci\n";
        let mapped = map_base_images(text, &map);
        assert!(
            mapped.starts_with("FROM --platform=linux/amd64 mirror.example/node:18-slim AS base\n"),
            "{mapped}"
        );
        assert_eq!(
            copied_paths(text),
            vec!["a", "b", "package-lock.json", "package.json"]
        );
        let json_form = "COPY --chown=app:app [\"requirements.txt\", \"my file.txt\", \"./\"]\n";
        assert_eq!(
            copied_paths(json_form),
            vec!["my file.txt", "requirements.txt"]
        );
    }

    #[test]
    fn dockerignore_patterns_follow_docker() {
        let ignore = DockerIgnore::parse(
            "# comment\nnode_modules\n*.log\n**/secret*\n/build/\n!build/keep.txt\n",
        )
        .unwrap();
        for (path, excluded) in [
            ("node_modules/x/index.js", true),
            ("app.log", true),
            ("logs/app.log", false),
            ("deep/dir/secret.txt", true),
            ("secret.env", true),
            ("build/out.bin", true),
            ("build/keep.txt", false),
            ("src/main.rs", false),
        ] {
            assert_eq!(ignore.excludes(path), excluded, "{path}");
        }
        assert!(
            DockerIgnore::parse("[unclosed")
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
    }

    #[test]
    fn the_ca_bundle_goes_into_every_stage() {
        let text = with_ca_bundle("FROM a AS build\nRUN x\nfrom b\nRUN y\n");
        assert_eq!(
            text.matches(&format!("COPY .slipway-ca-bundle.pem {CA_BUNDLE_PATH}"))
                .count(),
            2
        );
        assert!(
            text.contains(&format!("ENV SSL_CERT_FILE={CA_BUNDLE_PATH} ")),
            "{text}"
        );
        assert!(text.starts_with("FROM a AS build\nCOPY "), "{text}");
    }
}
