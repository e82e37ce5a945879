//! Text that comes from outside trainui (a run directory another program
//! wrote, a model's output, a folder's name) made safe to show: every
//! character that could drive a terminal or reorder what it shows is
//! written visibly escaped, as `less` and tmux show control sequences.
//! Every printer (headless lines, `status`, `runs`, `ctl`, the farewell
//! lines, the TUI, stderr messages, JSON on stdout, SVG titles) goes
//! through here.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as it is: the C0 controls (tab
/// and newline included), DEL, the C1 controls, the bidirectional
/// embeddings, overrides, isolates and marks, and the Unicode line and
/// paragraph separators (which end a line on some terminals).
#[must_use]
pub fn is_unsafe(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{061c}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// `text` on one line with every unsafe character escaped: `\n`, `\r`,
/// `\t`, `\x1b` (C0, DEL), `\u{9b}` (C1, bidirectional controls). Text
/// without any is returned as it is.
#[must_use]
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_with(text, false)
}

/// As [`escape`], but newlines stay: for text shown over several lines
/// (a model's output in a pane, a message on stderr).
#[must_use]
pub fn escape_lines(text: &str) -> Cow<'_, str> {
    escape_with(text, true)
}

fn escape_with(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| is_unsafe(c) && !(keep_newlines && c == '\n');
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !unsafe_char(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// JSON text (as serde_json writes it, which escapes the C0 controls
/// inside strings itself) with the other unsafe characters as `\uXXXX`
/// escapes, so that printing it cannot drive a terminal; it still parses
/// to the same value. Such characters can only stand inside strings, where
/// the escape means the same character; a newline is the pretty printer's
/// own whitespace.
#[must_use]
pub fn json_safe(json: String) -> String {
    let escaped = |c: char| is_unsafe(c) && c != '\n';
    if !json.chars().any(escaped) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if escaped(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_and_bidirectional_character_is_shown_escaped_on_one_line() {
        let hostile =
            "run\x1b]0;owned\x07\x1b[8;31m\u{9b}2J\u{202e}gnp.exe\u{2066}x\u{2069}\r\n\t\x7fend";
        let shown = escape(hostile);
        assert_eq!(
            shown,
            "run\\x1b]0;owned\\x07\\x1b[8;31m\\u{9b}2J\\u{202e}gnp.exe\\u{2066}x\\u{2069}\\r\\n\\t\\x7fend"
        );
        assert!(!shown.chars().any(is_unsafe), "{shown}");
        for c in ('\u{202a}'..='\u{202e}').chain('\u{2066}'..='\u{2069}') {
            assert!(is_unsafe(c), "{c:?}");
        }
        for c in (0u8..0x20).chain([0x7f]).map(char::from) {
            assert!(is_unsafe(c), "{c:?}");
        }
        for c in (0x80..=0x9f).filter_map(char::from_u32) {
            assert!(is_unsafe(c), "{c:?}");
        }
    }

    #[test]
    fn ordinary_text_is_left_as_it_is_and_lines_can_stay() {
        for text in ["lr-3e-4", "über 漢字 🙂 \\x1b as typed", ""] {
            assert!(matches!(escape(text), Cow::Borrowed(t) if t == text));
        }
        assert_eq!(escape_lines("a\nb\x1bc"), "a\nb\\x1bc");
        assert_eq!(escape("a\nb"), "a\\nb");
    }

    #[test]
    fn json_made_safe_parses_to_the_same_value() {
        let value = serde_json::json!({"name": "a\u{202e}b\x1b[2J\u{85}", "n": 1});
        for text in [
            serde_json::to_string(&value).unwrap(),
            serde_json::to_string_pretty(&value).unwrap(),
        ] {
            let text = json_safe(text);
            assert_eq!(escape_lines(&text), text.as_str(), "only newlines stay");
            assert!(
                text.contains("\\u202e") && text.contains("\\u0085"),
                "{text}"
            );
            let back: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(back, value);
        }
    }
}
