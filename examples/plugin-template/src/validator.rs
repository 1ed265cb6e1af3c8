//! `{{name}}`: a validator plugin for compiler-style lines
//! (`path:line:column: severity: message`).

use slipway_plugin_sdk::export_validator;
use slipway_plugin_sdk::validator::*;

pub struct Plugin;

impl Validator for Plugin {
    fn formats() -> Vec<String> {
        vec!["gcc-lines".into()]
    }

    fn parse(format: &str, report: &str) -> Result<Vec<Finding>, PluginError> {
        if format != "gcc-lines" {
            return Err(slipway_plugin_sdk::unsupported(None, format!("unknown format `{format}` (known: gcc-lines)"), None));
        }
        Ok(report.lines().filter_map(parse_line).collect())
    }
}

fn parse_line(line: &str) -> Option<Finding> {
    let mut parts = line.splitn(5, ':');
    let file = parts.next()?.trim().to_owned();
    let line_no = parts.next()?.trim().parse().ok()?;
    let column = parts.next()?.trim().parse().ok();
    let severity = match parts.next()?.trim() {
        "error" => Severity::Error,
        "warning" => Severity::Warning,
        _ => Severity::Info,
    };
    let message = parts.next()?.trim().to_owned();
    Some(Finding { file: Some(file), line: Some(line_no), column, severity, rule: None, message })
}

export_validator!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        let f = Plugin::parse("gcc-lines", "src/a.c:3:7: error: oops\nnoise\n").unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].line, f[0].column), (Some(3), Some(7)));
    }
}
