//! Plugin text shown to people is quoted, never trusted: a plugin's error
//! message, hint, panic or stderr reaches a terminal or a log only with its
//! control characters (escape sequences, carriage returns, forged line
//! breaks) written out as escapes, so it can neither recolour the screen nor
//! fake a line of Slipway's own.

/// `text` with every control character escaped (`\n`, `\u{1b}`, ...).
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn control_characters_are_written_out() {
        assert_eq!(quote("plain ünïcode"), "plain ünïcode");
        assert_eq!(
            quote("ok\n\u{1b}[2Kslipway: job succeeded\r"),
            "ok\\n\\u{1b}[2Kslipway: job succeeded\\r"
        );
        assert_eq!(quote("a\0b"), "a\\u{0}b");
    }
}
