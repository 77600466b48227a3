//! Cutting text to a readable length, making it safe for a terminal, and the one-line bar
//! charts of the reports.

use std::borrow::Cow;

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

/// `text` made safe to print on a terminal or into a log: every control character but the
/// line feed (ESC, BEL, NUL, CR, the C1 controls) and every character that reorders text
/// (the Unicode bidirectional controls) is written as a visible escape, `\x1b` or `\u{202e}`.
/// A message's sender writes its Subject, From and Received lines; printed raw, `\e]0;..\a`
/// sets the terminal's title and `\e[2J` clears it.
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !unsafe_char(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
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
    #[test]
    fn terminal_text_shows_control_characters_as_escapes() {
        use super::for_terminal;
        assert_eq!(for_terminal("plain\nlines"), "plain\nlines");
        assert_eq!(
            for_terminal("\u{1b}]0;pwned\u{7}\u{1b}[2J\0\r"),
            "\\x1b]0;pwned\\x07\\x1b[2J\\x00\\x0d"
        );
        assert_eq!(for_terminal("a\u{202e}b\u{9b}"), "a\\u{202e}b\\u{9b}");
    }

    use super::*;

    #[test]
    fn bars_scale() {
        assert_eq!(bar(0, 10, 50), "");
        assert_eq!(bar(1, 1000, 50), "#");
        assert_eq!(bar(10, 10, 50).len(), 50);
        assert_eq!(bar(5, 10, 50).len(), 25);
    }
}
