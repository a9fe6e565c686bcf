//! The one place that decides which characters from peers, the relay or the profile may reach
//! a terminal. Message text, names and relay error texts are attacker-controlled: a control
//! character can start an escape sequence (clear a line, hide text, set the title or the
//! clipboard with OSC 0/52), `\r` or `\n` can overwrite or forge a line, and bidi overrides can
//! make text read differently from what it is. Every human-readable output (CLI and TUI) passes
//! through here; JSON output does not (serde escapes controls, and scripts need the exact text).

use unicode_width::UnicodeWidthChar;

/// Shown in place of a character that must not reach the terminal: visible, so the reader
/// knows something was there.
pub const REPLACEMENT: char = '\u{fffd}';

/// Prefix of every continuation line of a multi-line message, so that no line of a peer's
/// text can start where a header (`bob: …`, `[time] bob: …`) starts.
pub const CONTINUATION: &str = "    | ";

/// Whether `c` reorders or hides text without being a control character: bidi embeddings,
/// overrides and isolates, the directional marks, and the Unicode line/paragraph separators.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// The character to draw for `c`: a tab becomes a space; C0 and C1 controls (ESC, CR, LF, BEL,
/// U+009B CSI, …), DEL and invisible format characters become [`REPLACEMENT`]. Without its ESC
/// (or C1 introducer) the rest of an escape sequence is inert printable text.
pub fn displayable(c: char) -> char {
    match c {
        '\t' => ' ',
        c if c.is_control() || is_invisible_format(c) => REPLACEMENT,
        c => c,
    }
}

/// A single-line field (a name, an error text, a reason): every line break is neutralised too.
pub fn line(text: &str) -> String {
    text.chars().map(displayable).collect()
}

/// Message text, which may span lines: each line is sanitised as by [`line`] and every line
/// after the first starts with [`CONTINUATION`], so the output keeps the author's line breaks
/// but cannot show a line that passes for a new message header. `\r\n` counts as one break;
/// a lone `\r` is neutralised (it would move the cursor back over the header).
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, part) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(CONTINUATION);
        }
        out.push_str(&line(part.strip_suffix('\r').unwrap_or(part)));
    }
    out
}

/// [`text`] for a terminal `width` columns wide whose first line already holds `used` columns
/// (the `bob: ` header). The terminal would wrap a long line by itself, and a peer who pads
/// a line with spaces to the edge could make the wrapped part start a screen line with
/// `bob: …`. So the line is broken here instead, and every screen line after the first
/// starts with [`CONTINUATION`]. Too narrow a terminal to leave room for text: plain [`text`].
pub fn text_for_width(text: &str, used: usize, width: usize) -> String {
    let indent = CONTINUATION.len();
    if width < indent + 8 || used + 8 > width {
        return self::text(text);
    }
    let mut out = String::with_capacity(text.len() + text.len() / width.max(1) * (indent + 1));
    for (i, part) in text.split('\n').enumerate() {
        let mut column = if i == 0 {
            used
        } else {
            out.push('\n');
            out.push_str(CONTINUATION);
            indent
        };
        for c in part
            .strip_suffix('\r')
            .unwrap_or(part)
            .chars()
            .map(displayable)
        {
            let w = UnicodeWidthChar::width(c).unwrap_or(1);
            if column + w > width {
                out.push('\n');
                out.push_str(CONTINUATION);
                column = indent;
            }
            out.push(c);
            column += w;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No byte that a terminal interprets (C0, DEL, C1) nor a bidi or separator character.
    fn assert_inert(s: &str) {
        for c in s.chars() {
            assert!(
                c == '\n' || !(c.is_control() || is_invisible_format(c)),
                "{c:?} left in {s:?}"
            );
        }
    }

    #[test]
    fn escape_sequences_lose_their_introducer() {
        for input in [
            "a\x1b[2Kb",
            "a\x1b[8mhidden",
            "\x1b]0;pwned title\x07x",
            "\x1b]52;c;cm0gLXJmIH4K\x07",
            "\x1b]52;c;cm0gLXJmIH4K\x1b\\",
            "csi\u{9b}31m",
            "osc\u{9d}0;t\u{9c}",
            "del\x7f",
        ] {
            let out = line(input);
            assert_inert(&out);
            assert!(!out.contains('\x1b') && !out.contains('\x07') && !out.contains('\u{9b}'));
            assert!(out.contains(REPLACEMENT), "{out:?}");
        }
        assert_eq!(line("a\x1b[2Kb"), "a\u{fffd}[2Kb");
    }

    #[test]
    fn a_single_line_field_has_no_line_breaks() {
        let out = line("bob\r\nmallory: hi\rx\u{2028}y\u{2029}z\x0b\x0c");
        assert!(!out.contains(['\n', '\r']));
        assert_inert(&out);
        assert_eq!(line("tab\there"), "tab here");
    }

    #[test]
    fn bidi_overrides_isolates_and_marks_are_replaced() {
        for c in [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200e}', '\u{200f}', '\u{061c}',
        ] {
            let out = line(&format!("invoice{c}fdp.exe"));
            assert_eq!(out, "invoice\u{fffd}fdp.exe");
        }
    }

    #[test]
    fn ordinary_text_is_untouched() {
        let s = "héllo, wörld! 你好 🙂 — \"quotes\" <tags> ; [brackets]";
        assert_eq!(line(s), s);
        assert_eq!(text(s), s);
    }

    #[test]
    fn multi_line_text_cannot_forge_a_header() {
        let out = text("hi\nbob: fake\r\n\rbob: overwritten\n\x1b[1Abob: up");
        let lines: Vec<&str> = out.split('\n').collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], "hi");
        for l in &lines[1..] {
            assert!(l.starts_with(CONTINUATION), "{l:?}");
            assert!(!l.starts_with("bob"));
        }
        assert_eq!(lines[1], "    | bob: fake");
        assert_eq!(lines[2], "    | \u{fffd}bob: overwritten");
        assert_inert(&out);
    }

    #[test]
    fn padding_to_the_terminal_edge_cannot_start_a_screen_line_with_a_header() {
        let width = 40;
        let header = "alice: ";
        let attack = format!(
            "ok{}bob: I changed my number",
            " ".repeat(width - header.len() - 2)
        );
        let out = text_for_width(&attack, header.len(), width);
        let lines: Vec<&str> = out.split('\n').collect();
        assert!(lines.len() > 1, "{out:?}");
        assert!(header.len() + lines[0].chars().count() <= width);
        for l in &lines[1..] {
            assert!(l.starts_with(CONTINUATION), "{l:?}");
            assert!(l.chars().count() <= width, "{l:?}");
        }
        // Wide characters count two columns; the author's own line breaks are kept.
        let out = text_for_width(&format!("{}\nnext", "界".repeat(30)), 0, 20);
        let lines: Vec<&str> = out.split('\n').collect();
        assert_eq!(lines[0], "界".repeat(10));
        assert!(lines[1..].iter().all(|l| l.starts_with(CONTINUATION)));
        assert_eq!(lines.last(), Some(&"    | next"));
        // A short line is untouched, and too narrow a terminal falls back to `text`.
        assert_eq!(text_for_width("hi", 7, 80), "hi");
        assert_eq!(text_for_width("a\nb", 0, 5), text("a\nb"));
        assert_inert(&out);
    }
}
