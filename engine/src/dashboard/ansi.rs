//! Terminal colours in job output (ANSI SGR sequences, `ESC [ … m`) as
//! runs of text with a class the stylesheet colours: the 8 colours and
//! their bright forms, and bold. Every other escape sequence is dropped,
//! so no control character reaches the page. `static/app.js` does the
//! same for lines that arrive live.

/// A run of text and its classes (`fg-1`…`fg-15`, `b`); empty: plain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Classes for the run's span, space-separated.
    pub class: String,
    /// The text, without escape sequences.
    pub text: String,
}

#[derive(Default, Clone, Copy)]
struct Style {
    fg: Option<u8>,
    bold: bool,
}

impl Style {
    fn class(self) -> String {
        let mut out = Vec::new();
        if let Some(c) = self.fg {
            out.push(format!("fg-{c}"));
        }
        if self.bold {
            out.push("b".into());
        }
        out.join(" ")
    }

    fn apply(&mut self, params: &str) {
        let codes: Vec<u32> = if params.is_empty() {
            vec![0]
        } else {
            params.split(';').map(|p| p.parse().unwrap_or(0)).collect()
        };
        let mut i = 0;
        while i < codes.len() {
            match codes[i] {
                0 => *self = Style::default(),
                1 => self.bold = true,
                22 => self.bold = false,
                c @ 30..=37 => self.fg = Some((c - 30) as u8),
                c @ 90..=97 => self.fg = Some((c - 90 + 8) as u8),
                39 => self.fg = None,
                // 256-colour and true-colour forms: their arguments are skipped.
                38 => {
                    i += if codes.get(i + 1) == Some(&5) { 2 } else { 4 };
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// `line` split into runs of one style each.
pub fn runs(line: &str) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    let mut style = Style::default();
    let mut text = String::new();
    let mut chars = line.chars().peekable();
    let flush = |out: &mut Vec<Run>, text: &mut String, style: Style| {
        if !text.is_empty() {
            out.push(Run {
                class: style.class(),
                text: std::mem::take(text),
            });
        }
    };
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            if !c.is_control() || c == '\t' {
                text.push(c);
            }
            continue;
        }
        if chars.peek() != Some(&'[') {
            chars.next(); // a two-character escape
            continue;
        }
        chars.next();
        let mut params = String::new();
        let mut last = None;
        for p in chars.by_ref() {
            if ('@'..='~').contains(&p) {
                last = Some(p);
                break;
            }
            params.push(p);
        }
        if last == Some('m') {
            flush(&mut out, &mut text, style);
            style.apply(&params);
        }
    }
    flush(&mut out, &mut text, style);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(line: &str) -> Vec<(String, String)> {
        runs(line).into_iter().map(|r| (r.class, r.text)).collect()
    }

    #[test]
    fn colours_and_bold_become_classes_and_reset_ends_them() {
        assert_eq!(
            shown("\u{1b}[32mok\u{1b}[0m plain \u{1b}[1;91mFAIL\u{1b}[m"),
            vec![
                ("fg-2".into(), "ok".into()),
                (String::new(), " plain ".into()),
                ("fg-9 b".into(), "FAIL".into()),
            ]
        );
    }

    #[test]
    fn other_sequences_and_control_characters_are_dropped() {
        assert_eq!(
            shown("a\u{1b}[2Kb\u{1b}[38;5;208mc\u{7}"),
            vec![(String::new(), "ab".into()), (String::new(), "c".into())]
        );
        assert_eq!(
            shown("plain\ttext"),
            vec![(String::new(), "plain\ttext".into())]
        );
    }
}
