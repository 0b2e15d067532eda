//! Untrusted text made safe to show: the one place where listing ids, sellers, brands, titles,
//! file names and error messages become text for a terminal or a log.
//!
//! Listings and catalogs come from people who may want to forge what an analyst sees: an escape
//! sequence can recolour the terminal or set its title, a newline can add a fake log line, a
//! bidirectional override can reverse the text after it. Every table, every message on stderr and
//! every log line that carries such text passes it through [`escape`], which shows each of those
//! characters visibly (`\x1b`, `\n`, `\u{202e}`) instead of sending it to the terminal. JSON output
//! is never escaped this way: it carries the text exactly (JSON's own escaping already keeps it on
//! one line).
//!
//! A backslash is left as it is, so Windows paths stay readable; the escaped form of a character
//! and the same characters typed literally therefore look alike, which forges nothing.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as it is: C0 controls (ESC, CR, LF, TAB…), DEL, C1
/// controls, the bidirectional marks, embeddings, overrides and isolates, the line and paragraph
/// separators, and the byte-order mark.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}' | '\u{feff}'
        )
}

/// `text` with every character that must not reach a terminal as it is (C0 and C1 controls, DEL,
/// bidirectional marks, embeddings, overrides and isolates, line and paragraph separators, the
/// byte-order mark) written visibly: `\n`, `\r`, `\t`, `\x1b` for the other ASCII controls and
/// DEL, `\u{85}` for the rest. Borrows when nothing needs escaping. For listing ids, titles,
/// sellers and error messages shown on a terminal or in a log; JSON needs no such escaping.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        let s = "Northwind Runner Pro — 100 % original, ünïcödé, 北京, C:\\photos\\a.jpg";
        assert!(matches!(escape(s), Cow::Borrowed(t) if t == s));
    }

    #[test]
    fn controls_and_bidi_overrides_are_shown_visibly() {
        assert_eq!(escape("a\x1b[31mred\x1b]0;title\x07"), "a\\x1b[31mred\\x1b]0;title\\x07");
        assert_eq!(escape("one\ntwo\r\nthree\tfour"), "one\\ntwo\\r\\nthree\\tfour");
        assert_eq!(escape("del\x7f c1\u{85}\u{9b}"), "del\\x7f c1\\u{85}\\u{9b}");
        assert_eq!(escape("gpj.\u{202e}exe"), "gpj.\\u{202e}exe");
        assert_eq!(
            escape("\u{2066}x\u{2069}\u{200f}\u{2028}\u{feff}"),
            "\\u{2066}x\\u{2069}\\u{200f}\\u{2028}\\u{feff}"
        );
        assert_eq!(escape("nul\0"), "nul\\x00");
    }

    #[test]
    fn escaped_text_has_nothing_unsafe_left() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let out = escape(&all);
        assert!(!out.chars().any(is_unsafe));
        assert!(out.contains("\\x1b") && out.contains("\\u{202e}") && out.contains("\\n"));
    }
}
