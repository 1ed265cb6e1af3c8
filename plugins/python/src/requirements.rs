//! pip requirements files: which files a `requirements.txt` pulls in
//! (`-r`/`-c`), which packages it names, and which lines install a local
//! path that is not in the image.

use slipway_plugin_sdk::ecosystem::PluginError;
use slipway_plugin_sdk::{Repo, malformed};

use crate::manifest::requirement_name;

/// A requirements file and what it references.
pub(crate) struct ReqFile {
    pub(crate) path: String,
    /// Lines that install a local path (`-e .`, `.`): they need the source,
    /// which is not in the image; dropped from the copy in the image.
    pub(crate) local_lines: Vec<(u32, String)>,
    pub(crate) names: Vec<String>,
}

/// The value of option `opts` (`-r x`, `--requirement=x`) when `line` is one.
fn option_value<'a>(line: &'a str, opts: &[&str]) -> Option<&'a str> {
    opts.iter().find_map(|opt| {
        let rest = line.strip_prefix(opt)?;
        rest.starts_with([' ', '=', '\t'])
            .then(|| rest.trim_start_matches(['=', ' ', '\t']).trim())
    })
}

/// Does this requirement install a path instead of a package?
fn is_local(target: &str) -> bool {
    target.starts_with(['.', '/']) || target.starts_with("file:") || target.contains("@ file:")
}

/// What one line of a requirements file (comment stripped) is.
enum Entry<'a> {
    /// `-r`/`-c` (or the long forms) naming another file.
    Include(&'a str),
    /// A local path to install (`.`, `-e ./pkg`, `file:`).
    Local,
    /// A package, by canonical name.
    Package(String),
    /// An option, an editable VCS URL, or nothing we can name.
    Other,
}

fn classify(line: &str) -> Entry<'_> {
    if let Some(inc) = option_value(line, &["-r", "--requirement", "-c", "--constraint"]) {
        return Entry::Include(inc);
    }
    let editable = option_value(line, &["-e", "--editable"]);
    let target = editable.unwrap_or(line);
    if is_local(target) {
        Entry::Local
    } else if target.starts_with('-') || (target.contains("://") && editable.is_some()) {
        Entry::Other
    } else {
        requirement_name(target).map_or(Entry::Other, Entry::Package)
    }
}

/// Read `path` and the files it includes (`-r`, `-c`), depth-first, once each.
pub(crate) fn read_requirements(
    repo: &Repo,
    path: &str,
    out: &mut Vec<ReqFile>,
    notes: &mut Vec<String>,
) -> Result<(), PluginError> {
    if out.iter().any(|r| r.path == path) || out.len() >= 32 {
        return Ok(());
    }
    let Some(file) = repo.read_text(path)? else {
        return Ok(());
    };
    let dir = path
        .rsplit_once('/')
        .map(|(d, _)| format!("{d}/"))
        .unwrap_or_default();
    let mut req = ReqFile {
        path: path.to_owned(),
        local_lines: Vec::new(),
        names: Vec::new(),
    };
    let mut includes = Vec::new();
    for (n, raw) in file.numbered_lines() {
        let line = raw.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match classify(line) {
            Entry::Include(inc) => {
                includes.extend(include_target(repo, path, &dir, n, line, inc, notes)?)
            }
            Entry::Local => req.local_lines.push((n, line.to_owned())),
            Entry::Package(name) => req.names.push(name),
            Entry::Other => {}
        }
    }
    out.push(req);
    for inc in includes {
        read_requirements(repo, &inc, out, notes)?;
    }
    Ok(())
}

/// The repository path of include `inc` on line `n` of `path` (relative to
/// its directory `dir`): one outside the repository root is noted and
/// skipped; one that does not exist is an error, as it is for pip.
fn include_target(
    repo: &Repo,
    path: &str,
    dir: &str,
    n: u32,
    line: &str,
    inc: &str,
    notes: &mut Vec<String>,
) -> Result<Option<String>, PluginError> {
    if inc.contains("..") || inc.starts_with('/') || inc.contains("://") {
        notes.push(format!("{path}:{n}: `{line}` refers outside the repository root's files; not copied into the image"));
        return Ok(None);
    }
    let target = format!("{dir}{inc}");
    if !repo.exists(&target) {
        return Err(malformed(
            path,
            Some(n),
            format!("includes `{inc}`, which does not exist"),
            Some("fix or remove the include; pip would fail on it"),
        ));
    }
    Ok(Some(target))
}
