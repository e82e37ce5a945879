//! Word wrapping by display width, for the views that show long lines
//! whole (the events, the log, a sample).

use unicode_width::UnicodeWidthChar;

/// `text` cut into lines at most `width` columns wide: at spaces where
/// there are any, inside a word where it alone is too long. Newlines in
/// `text` start new lines; an empty text is one empty line.
#[must_use]
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        let mut line_width = 0;
        for word in paragraph.split_inclusive(' ') {
            let word_width: usize = word.chars().map(|c| c.width().unwrap_or(0)).sum();
            let visible = word.trim_end_matches(' ');
            let visible_width = word_width - (word.len() - visible.len());
            if line_width + visible_width > width && line_width > 0 {
                lines.push(std::mem::take(&mut line).trim_end().to_owned());
                line_width = 0;
            }
            for c in word.chars() {
                let w = c.width().unwrap_or(0);
                if line_width + w > width && c != ' ' {
                    lines.push(std::mem::take(&mut line));
                    line_width = 0;
                }
                if c == ' ' && line_width + w > width {
                    continue;
                }
                line.push(c);
                line_width += w;
            }
        }
        lines.push(line.trim_end().to_owned());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wraps_at_spaces_and_cuts_long_words() {
        assert_eq!(
            wrap("val loss 0.8149, exact match 3/4", 16),
            ["val loss 0.8149,", "exact match 3/4"]
        );
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("a\nb", 10), ["a", "b"]);
        assert_eq!(wrap("", 10), [""]);
        assert_eq!(wrap("→ 12", 2), ["→", "12"]);
    }
}
