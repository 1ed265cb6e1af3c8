//! Formats integers with `itoa`.

/// `n` in decimal, e.g. `"-42"`.
pub fn decimal(n: i64) -> String {
    itoa::Buffer::new().format(n).to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_with_itoa() {
        assert_eq!(super::decimal(-42), "-42");
        assert_eq!(super::decimal(i64::MAX), i64::MAX.to_string());
    }
}
