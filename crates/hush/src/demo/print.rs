//! Printing: section headers, numbered steps and their indented details, and short renderings
//! of public values (a safety number on one line, the first bytes of a key).

use hush_proto::SafetyNumber;

use super::Demo;

pub(super) fn section(title: &str) {
    crate::output::show!("\n== {title} ==");
}

impl Demo {
    pub(super) fn say(&mut self, text: impl AsRef<str>) {
        self.step += 1;
        crate::output::show!("{:>3}. {}", self.step, text.as_ref());
    }

    pub(super) fn detail(&self, text: impl AsRef<str>) {
        crate::output::show!("       {}", text.as_ref());
    }
}

/// A safety number as 12 groups of 5 digits on one line.
pub(super) fn one_line(number: &SafetyNumber) -> String {
    number
        .grouped()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn short_hex(bytes: &[u8]) -> String {
    let head = bytes.get(..8).unwrap_or(bytes);
    format!("{}…", hex::encode(head))
}
