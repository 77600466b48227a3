//! Cutting text to a readable length, and the one-line bar charts of the reports.

/// Cuts `text` to at most `max` characters on one line.
pub fn shorten(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim();
    if trimmed.chars().count() <= max {
        trimmed.to_string()
    } else {
        let cut: String = trimmed.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
pub fn cut_at_char(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A bar of `n` out of `max`, at most `width` wide (at least one `#` for a non-zero count).
pub fn bar(n: usize, max: usize, width: usize) -> String {
    if n == 0 || max == 0 {
        return String::new();
    }
    let len = (n * width).div_ceil(max).clamp(1, width);
    "#".repeat(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale() {
        assert_eq!(bar(0, 10, 50), "");
        assert_eq!(bar(1, 1000, 50), "#");
        assert_eq!(bar(10, 10, 50).len(), 50);
        assert_eq!(bar(5, 10, 50).len(), 25);
    }
}
