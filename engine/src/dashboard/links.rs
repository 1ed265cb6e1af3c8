//! Links from a finding to its line in the repository's own web view, at
//! the job's exact commit: GitHub, GitLab and Gitea/Forgejo lay those URLs
//! out differently. Other hosts get no link (the table still names the
//! file and line).

use percent_encoding::{AsciiSet, CONTROLS};

use crate::callbacks::ForgeKind;

/// What a path segment of the URL may not hold as it is.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// The URL showing `file` at `line` of `repository` at commit `sha`, when
/// the forge is known (the job's `forge`, else a well-known host).
pub fn source_line(
    repository: &str,
    sha: &str,
    forge: Option<ForgeKind>,
    file: &str,
    line: Option<u32>,
) -> Option<String> {
    let base = repository.strip_prefix("https://")?;
    let base = base.trim_end_matches('/').trim_end_matches(".git");
    let host = base.split('/').next()?;
    let kind = forge.or(match host {
        "github.com" => Some(ForgeKind::Github),
        "gitlab.com" => Some(ForgeKind::Gitlab),
        "codeberg.org" | "gitea.com" => Some(ForgeKind::Gitea),
        _ => None,
    })?;
    // Only a full commit and a path inside the repository.
    let file = file.trim_start_matches("./");
    if sha.len() != 40
        || !sha.bytes().all(|b| b.is_ascii_hexdigit())
        || file.is_empty()
        || file.starts_with('/')
        || file.split('/').any(|part| part == "..")
    {
        return None;
    }
    let file: String = file
        .split('/')
        .map(|part| percent_encoding::utf8_percent_encode(part, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/");
    let anchor = line.map(|l| format!("#L{l}")).unwrap_or_default();
    Some(match kind {
        ForgeKind::Github => format!("https://{base}/blob/{sha}/{file}{anchor}"),
        ForgeKind::Gitlab => format!("https://{base}/-/blob/{sha}/{file}{anchor}"),
        ForgeKind::Gitea => format!("https://{base}/src/commit/{sha}/{file}{anchor}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn each_forge_gets_its_own_layout() {
        assert_eq!(
            source_line(
                "https://github.com/acme/shop.git",
                SHA,
                None,
                "src/app.py",
                Some(12)
            )
            .unwrap(),
            format!("https://github.com/acme/shop/blob/{SHA}/src/app.py#L12")
        );
        assert_eq!(
            source_line("https://gitlab.com/acme/shop", SHA, None, "a b.rs", Some(3)).unwrap(),
            format!("https://gitlab.com/acme/shop/-/blob/{SHA}/a%20b.rs#L3")
        );
        assert_eq!(
            source_line(
                "https://git.example.com/acme/shop",
                SHA,
                Some(ForgeKind::Gitea),
                "./lib.go",
                None
            )
            .unwrap(),
            format!("https://git.example.com/acme/shop/src/commit/{SHA}/lib.go")
        );
    }

    #[test]
    fn unknown_hosts_local_paths_and_escaping_files_get_no_link() {
        assert_eq!(
            source_line("https://git.example.com/a/b", SHA, None, "x.py", Some(1)),
            None
        );
        assert_eq!(
            source_line("/srv/repos/shop", SHA, None, "x.py", Some(1)),
            None
        );
        assert_eq!(
            source_line("https://github.com/a/b", SHA, None, "../etc/passwd", None),
            None
        );
        assert_eq!(
            source_line("https://github.com/a/b", "main", None, "x.py", None),
            None
        );
    }
}
