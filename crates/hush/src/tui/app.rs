//! State of `hush chat` and everything that changes it: key presses, pastes, network events and
//! ticks. Each handler returns the commands for the network task; drawing lives in `ui.rs`.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossterm::event::{Event as TermEvent, KeyEvent};
use hush_client::{Contact, DeliveryState, Event, GroupInfo, HistoryEntry};

use super::groups::SystemLine;
use super::keys::{self, cmd, Action};
use super::net::{NetCommand, NetEvent};
use super::ui;

/// How long a notice stays in the status bar.
pub const NOTICE_TTL: Duration = Duration::from_secs(10);

/// A one-line message in the status bar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Text.
    pub text: String,
    /// Whether it reports a failure (drawn in red).
    pub error: bool,
    /// When it was posted.
    pub at: Instant,
}

/// A window over the conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Popup {
    /// Keys and commands.
    Help,
    /// A safety number to compare.
    Safety {
        /// Contact.
        contact: String,
        /// Three lines of four five-digit groups.
        grouped: String,
        /// Whether it is for a changed, not yet accepted key.
        key_changed: bool,
    },
    /// A group's members, each with its standing against our contacts.
    Members(GroupInfo),
}

/// Everything the screen shows.
#[derive(Debug)]
pub struct App {
    /// Our own name.
    pub me: String,
    /// Contacts, sorted by name.
    pub contacts: Vec<Contact>,
    /// Groups, in creation order (listed after the contacts as `#name`).
    pub groups: Vec<GroupInfo>,
    /// The selected contact's name, or `#` and a group's.
    pub selected: Option<String>,
    /// System lines of group conversations (by `#name`), this session only.
    pub system: HashMap<String, Vec<SystemLine>>,
    /// Conversations received from the network task.
    pub histories: HashMap<String, Vec<HistoryEntry>>,
    /// Messages typed and handed to the network task, not yet committed.
    pub pending: HashMap<String, Vec<HistoryEntry>>,
    /// The input line (may hold newlines).
    pub input: String,
    /// Cursor: a byte offset into `input`, always on a character boundary.
    pub cursor: usize,
    /// Conversation lines scrolled back from the bottom.
    pub scroll: usize,
    /// Whether the relay connection is open.
    pub connected: bool,
    /// The open popup.
    pub popup: Option<Popup>,
    /// The status-bar notice.
    pub notice: Option<Notice>,
    /// Set when the user asked to leave.
    pub quit: bool,
    /// Terminal size (columns, rows), for paging.
    pub size: (u16, u16),
    /// The contact (or `#group`) named on the command line, until the list arrives.
    pub(super) wanted: Option<String>,
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Pasted text as it goes into the input: line breaks normalised, tabs as spaces, other
/// control characters dropped (they could drive the terminal).
fn clean_paste(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .replace('\t', "    ")
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect()
}

impl App {
    /// A fresh screen for `me`; `wanted` is selected (or added) once contacts arrive.
    pub fn new(me: &str, wanted: Option<String>) -> Self {
        Self {
            me: me.to_owned(),
            contacts: Vec::new(),
            groups: Vec::new(),
            selected: None,
            system: HashMap::new(),
            histories: HashMap::new(),
            pending: HashMap::new(),
            input: String::new(),
            cursor: 0,
            scroll: 0,
            connected: false,
            popup: None,
            notice: None,
            quit: false,
            size: (80, 24),
            wanted,
        }
    }

    /// The selected contact.
    pub fn current(&self) -> Option<&Contact> {
        let name = self.selected.as_deref()?;
        self.contacts.iter().find(|c| c.name == name)
    }

    /// The selected conversation: committed messages, then ones still being sent.
    pub fn current_entries(&self) -> Vec<&HistoryEntry> {
        let Some(name) = self.selected.as_deref() else {
            return Vec::new();
        };
        let committed = self.histories.get(name).into_iter().flatten();
        let pending = self.pending.get(name).into_iter().flatten();
        committed.chain(pending).collect()
    }

    pub(super) fn post(&mut self, text: impl Into<String>, error: bool) {
        self.notice = Some(Notice {
            text: text.into(),
            error,
            at: Instant::now(),
        });
    }

    // ---- terminal input ---------------------------------------------------------------

    /// A terminal event: keys, pastes, resizes.
    pub fn on_terminal_event(&mut self, event: TermEvent) -> Vec<NetCommand> {
        match event {
            TermEvent::Key(key) => self.on_key(key),
            TermEvent::Paste(text) => {
                self.paste(&text);
                Vec::new()
            }
            TermEvent::Resize(w, h) => {
                self.size = (w, h);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// A pasted text goes into the input, whatever it contains; it is never sent by itself.
    pub fn paste(&mut self, text: &str) {
        self.insert_str(&clean_paste(text));
    }

    /// A key press.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<NetCommand> {
        let Some(action) = keys::action(&key) else {
            return Vec::new();
        };
        if self.popup.is_some() {
            match action {
                Action::Quit => self.quit = true,
                Action::Close | Action::Submit => self.popup = None,
                _ => {}
            }
            return Vec::new();
        }
        match action {
            Action::Quit => self.quit = true,
            Action::Submit => return self.submit(),
            Action::Newline => self.insert_str("\n"),
            Action::Insert(c) => {
                let mut buf = [0u8; 4];
                self.insert_str(c.encode_utf8(&mut buf));
            }
            Action::NextContact => return self.select_offset(1),
            Action::PrevContact => return self.select_offset(-1),
            Action::ScrollUp => {
                let page = ui::page_lines(self);
                self.scroll = self.scroll.saturating_add(page).min(ui::max_scroll(self));
            }
            Action::ScrollDown => {
                let page = ui::page_lines(self);
                self.scroll = self.scroll.saturating_sub(page);
            }
            Action::Close => self.notice = None,
            Action::Backspace => {
                if let Some(prev) = self.prev_boundary() {
                    self.input.replace_range(prev..self.cursor, "");
                    self.cursor = prev;
                }
            }
            Action::Delete => {
                if let Some(next) = self.next_boundary() {
                    self.input.replace_range(self.cursor..next, "");
                }
            }
            Action::Left => {
                if let Some(prev) = self.prev_boundary() {
                    self.cursor = prev;
                }
            }
            Action::Right => {
                if let Some(next) = self.next_boundary() {
                    self.cursor = next;
                }
            }
            Action::Home => {
                let before = self.input.get(..self.cursor).unwrap_or_default();
                self.cursor = before.rfind('\n').map_or(0, |i| i + 1);
            }
            Action::End => {
                let after = self.input.get(self.cursor..).unwrap_or_default();
                self.cursor += after.find('\n').unwrap_or(after.len());
            }
            Action::ClearInput => {
                self.input.clear();
                self.cursor = 0;
            }
        }
        Vec::new()
    }

    fn insert_str(&mut self, text: &str) {
        if self.input.is_char_boundary(self.cursor) {
            self.input.insert_str(self.cursor, text);
            self.cursor += text.len();
        } else {
            self.input.push_str(text);
            self.cursor = self.input.len();
        }
    }

    fn prev_boundary(&self) -> Option<usize> {
        let before = self.input.get(..self.cursor)?;
        before.char_indices().next_back().map(|(i, _)| i)
    }

    fn next_boundary(&self) -> Option<usize> {
        let after = self.input.get(self.cursor..)?;
        after.chars().next().map(|c| self.cursor + c.len_utf8())
    }

    fn clear_input(&mut self) {
        self.input.clear();
        self.cursor = 0;
    }

    /// Enter: a slash command, or a message to the selected contact.
    fn submit(&mut self) -> Vec<NetCommand> {
        let text = self.input.trim_end_matches(['\n', '\r']).to_owned();
        if text.trim().is_empty() {
            return Vec::new();
        }
        if let Some(rest) = text.strip_prefix("//") {
            return self.send(format!("/{rest}"));
        }
        if text.starts_with('/') {
            return self.command(&text);
        }
        self.send(text)
    }

    fn send(&mut self, text: String) -> Vec<NetCommand> {
        if self.current_group().is_some() {
            return self.send_group(text);
        }
        let Some(contact) = self.current() else {
            self.post(keys::NO_CONTACT_SELECTED, true);
            return Vec::new();
        };
        if contact.changed_key.is_some() {
            let notice = keys::send_blocked(&contact.name);
            self.post(notice, true);
            return Vec::new();
        }
        let name = contact.name.clone();
        // Shown at once as queued; replaced by the committed entry when the network task
        // reports back.
        let entry = HistoryEntry {
            id: String::new(),
            contact: name.clone(),
            outgoing: true,
            text: text.clone(),
            sent_at: now_ms(),
            received_at: None,
            state: DeliveryState::Queued,
            verified: contact.verified,
            key_changed: false,
            failure: None,
            group: None,
        };
        self.pending.entry(name.clone()).or_default().push(entry);
        self.clear_input();
        self.scroll = 0;
        vec![NetCommand::Send {
            contact: name,
            text,
        }]
    }

    /// A slash command. The input is kept when the command is malformed.
    fn command(&mut self, line: &str) -> Vec<NetCommand> {
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or_default();
        let args: Vec<&str> = words.collect();
        let current = self.selected.clone();
        let out = match (command, args.as_slice()) {
            (cmd::ADD, [name]) => vec![NetCommand::Add {
                name: (*name).to_owned(),
            }],
            (cmd::ADD, _) => return self.usage("/add NAME"),
            (cmd::VERIFY, []) => match current {
                Some(name) => vec![NetCommand::SafetyNumber { name }],
                None => return self.usage("/verify NAME"),
            },
            (cmd::VERIFY, [word]) if *word == cmd::CONFIRM && !self.is_contact(word) => {
                match current {
                    Some(name) => vec![NetCommand::ConfirmVerified { name }],
                    None => return self.usage("/verify NAME confirm"),
                }
            }
            (cmd::VERIFY, [name]) => vec![NetCommand::SafetyNumber {
                name: (*name).to_owned(),
            }],
            (cmd::VERIFY, [name, word]) if *word == cmd::CONFIRM => {
                vec![NetCommand::ConfirmVerified {
                    name: (*name).to_owned(),
                }]
            }
            (cmd::VERIFY, _) => return self.usage("/verify [NAME] [confirm]"),
            (cmd::TRUST, [name]) => vec![NetCommand::Trust {
                name: (*name).to_owned(),
            }],
            (cmd::TRUST, []) => match current {
                Some(name) => vec![NetCommand::Trust { name }],
                None => return self.usage("/trust NAME"),
            },
            (cmd::TRUST, _) => return self.usage("/trust NAME"),
            (cmd::MEMBERS, [] | [_]) => match self.members_command(args.first().copied()) {
                Some(command) => vec![command],
                None => return self.usage("/members GROUP"),
            },
            (cmd::MEMBERS, _) => return self.usage("/members GROUP"),
            (cmd::HELP, _) => {
                self.popup = Some(Popup::Help);
                Vec::new()
            }
            (cmd::QUIT, _) => {
                self.quit = true;
                Vec::new()
            }
            (other, _) => {
                let notice = keys::unknown_command(other);
                self.post(notice, true);
                return Vec::new();
            }
        };
        self.clear_input();
        out
    }

    fn usage(&mut self, usage: &str) -> Vec<NetCommand> {
        self.post(keys::usage(usage), true);
        Vec::new()
    }

    fn is_contact(&self, name: &str) -> bool {
        self.contacts.iter().any(|c| c.name == name)
    }

    /// A contact, or a listed `#group`.
    fn is_entry(&self, name: &str) -> bool {
        match name.strip_prefix('#') {
            Some(group) => self.groups.iter().any(|g| g.name == group),
            None => self.is_contact(name),
        }
    }

    // ---- selection ----------------------------------------------------------------------

    /// Select a contact: load its conversation and clear its unread count.
    pub fn select(&mut self, name: &str) -> Vec<NetCommand> {
        self.selected = Some(name.to_owned());
        self.scroll = 0;
        let mut out = vec![NetCommand::LoadHistory {
            name: name.to_owned(),
        }];
        out.extend(self.read_current());
        out
    }

    /// The user is looking at the selected conversation: its unread count goes to zero.
    fn read_current(&mut self) -> Option<NetCommand> {
        let name = self.selected.clone()?;
        if name.starts_with('#') {
            return self.read_group();
        }
        let contact = self.contacts.iter_mut().find(|c| c.name == name)?;
        if contact.unread == 0 {
            return None;
        }
        contact.unread = 0;
        Some(NetCommand::MarkRead { name })
    }

    fn select_offset(&mut self, offset: isize) -> Vec<NetCommand> {
        let names = self.entry_names();
        let count = names.len();
        if count == 0 {
            return Vec::new();
        }
        let index = self
            .selected
            .as_deref()
            .and_then(|name| names.iter().position(|n| n == name));
        let next = match index {
            Some(i) => (i as isize + offset).rem_euclid(count as isize) as usize,
            None => 0,
        };
        match names.get(next).cloned() {
            Some(name) => self.select(&name),
            None => Vec::new(),
        }
    }

    // ---- network ------------------------------------------------------------------------

    /// Something from the network task.
    pub fn on_net_event(&mut self, event: NetEvent) -> Vec<NetCommand> {
        match event {
            NetEvent::Connection(connected) => self.connected = connected,
            NetEvent::Contacts(list) => return self.set_contacts(list),
            NetEvent::Groups(list) => return self.set_groups(list),
            NetEvent::GroupMembers(info) => self.popup = Some(Popup::Members(info)),
            NetEvent::Received(Event::Group { group, change }) => {
                self.on_group_change(&group, &change);
            }
            NetEvent::History { contact, entries } => {
                self.histories.insert(contact, entries);
            }
            NetEvent::SendDone { contact, error } => {
                let text = self.pending.get_mut(&contact).and_then(|p| {
                    if p.is_empty() {
                        None
                    } else {
                        Some(p.remove(0).text)
                    }
                });
                if let Some(error) = error {
                    self.post(keys::send_failed(&contact, &error), true);
                    // Give the text back rather than lose it.
                    if let Some(text) = text.filter(|_| self.input.is_empty()) {
                        self.input = text;
                        self.cursor = self.input.len();
                    }
                }
            }
            NetEvent::Added(name) => {
                self.post(keys::added(&name), false);
                return self.select(&name);
            }
            NetEvent::SafetyNumber {
                contact,
                grouped,
                key_changed,
            } => {
                self.popup = Some(Popup::Safety {
                    contact,
                    grouped,
                    key_changed,
                });
            }
            NetEvent::Received(Event::KeyChanged { contact }) => {
                self.post(keys::key_changed_notice(&contact), true);
            }
            NetEvent::Received(Event::Rejected { contact, reason }) => {
                self.post(keys::rejected(contact.as_deref(), &reason), true);
            }
            NetEvent::Received(Event::Failed {
                contact, reason, ..
            }) => {
                self.post(keys::message_failed(&contact, &reason), true);
            }
            NetEvent::Received(_) => {}
            NetEvent::Info(text) => self.post(text, false),
            NetEvent::Error(text) => self.post(text, true),
        }
        Vec::new()
    }

    fn set_contacts(&mut self, list: Vec<Contact>) -> Vec<NetCommand> {
        self.contacts = list;
        // A `#group` waits for the group list.
        if let Some(wanted) = self.wanted.take_if(|w| !w.starts_with('#')) {
            if self.is_contact(&wanted) {
                return self.select(&wanted);
            }
            // Not a contact yet: add it; `Added` selects it.
            return vec![NetCommand::Add { name: wanted }];
        }
        let still_there = self
            .selected
            .as_deref()
            .is_some_and(|name| self.is_entry(name));
        if !still_there {
            self.selected = None;
            if let Some(first) = self.entry_names().first().cloned() {
                return self.select(&first);
            }
            return Vec::new();
        }
        self.read_current().into_iter().collect()
    }

    /// A clock tick: old notices go away.
    pub fn on_tick(&mut self, now: Instant) {
        if self
            .notice
            .as_ref()
            .is_some_and(|n| now.saturating_duration_since(n.at) >= NOTICE_TTL)
        {
            self.notice = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::{KeyCode, KeyModifiers};

    use crate::tui::test_support::contact;

    fn app_with(contacts: &[&str]) -> App {
        let mut app = App::new("me", None);
        let list = contacts.iter().map(|n| contact(n, 0)).collect();
        app.on_net_event(NetEvent::Contacts(list));
        app
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn type_text(app: &mut App, text: &str) -> Vec<NetCommand> {
        let mut out = Vec::new();
        for c in text.chars() {
            out.extend(app.on_key(key(KeyCode::Char(c))));
        }
        out
    }

    #[test]
    fn alt_enter_inserts_a_newline_and_sends_nothing() {
        let mut app = app_with(&["alice"]);
        type_text(&mut app, "hi");
        let out = app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT));
        assert!(out.is_empty());
        type_text(&mut app, "there");
        assert_eq!(app.input, "hi\nthere");
        assert_eq!(app.cursor, app.input.len());
    }

    #[test]
    fn enter_sends_to_the_selected_contact() {
        let mut app = app_with(&["alice", "bob"]);
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.selected.as_deref(), Some("bob"));
        type_text(&mut app, "hello");
        app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT));
        type_text(&mut app, "bob");
        let out = app.on_key(key(KeyCode::Enter));
        assert_eq!(
            out,
            vec![NetCommand::Send {
                contact: "bob".into(),
                text: "hello\nbob".into()
            }]
        );
        assert!(app.input.is_empty());
        // Shown at once, as queued.
        let entries = app.current_entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].state, DeliveryState::Queued);
    }

    #[test]
    fn enter_on_empty_input_does_nothing() {
        let mut app = app_with(&["alice"]);
        assert!(app.on_key(key(KeyCode::Enter)).is_empty());
        type_text(&mut app, "   ");
        assert!(app.on_key(key(KeyCode::Enter)).is_empty());
    }

    #[test]
    fn paste_with_newlines_does_not_send() {
        let mut app = app_with(&["alice"]);
        let out = app.on_terminal_event(TermEvent::Paste("line one\r\nline two\n".into()));
        assert!(out.is_empty());
        assert_eq!(app.input, "line one\nline two\n");
        assert!(app.pending.is_empty());
        // Control characters in a paste are dropped.
        app.on_terminal_event(TermEvent::Paste("x\u{1b}[2Jy".into()));
        assert!(app.input.ends_with("x[2Jy"));
    }

    #[test]
    fn slash_add_produces_an_add_command() {
        let mut app = app_with(&[]);
        let out = type_text(&mut app, "/add bob");
        assert!(out.is_empty());
        let out = app.on_key(key(KeyCode::Enter));
        assert_eq!(out, vec![NetCommand::Add { name: "bob".into() }]);
        assert!(app.input.is_empty());
        // Added selects the new contact.
        app.on_net_event(NetEvent::Contacts(vec![contact("bob", 0)]));
        let out = app.on_net_event(NetEvent::Added("bob".into()));
        assert_eq!(app.selected.as_deref(), Some("bob"));
        assert!(out.contains(&NetCommand::LoadHistory { name: "bob".into() }));
    }

    #[test]
    fn slash_quit_quits() {
        let mut app = app_with(&["alice"]);
        type_text(&mut app, "/quit");
        let out = app.on_key(key(KeyCode::Enter));
        assert!(out.is_empty());
        assert!(app.quit);
    }

    #[test]
    fn ctrl_c_quits() {
        let mut app = app_with(&[]);
        app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert!(app.quit);
    }

    #[test]
    fn verify_and_trust_commands() {
        let mut app = app_with(&["alice", "bob"]);
        type_text(&mut app, "/verify");
        assert_eq!(
            app.on_key(key(KeyCode::Enter)),
            vec![NetCommand::SafetyNumber {
                name: "alice".into()
            }]
        );
        type_text(&mut app, "/verify bob confirm");
        assert_eq!(
            app.on_key(key(KeyCode::Enter)),
            vec![NetCommand::ConfirmVerified { name: "bob".into() }]
        );
        type_text(&mut app, "/trust bob");
        assert_eq!(
            app.on_key(key(KeyCode::Enter)),
            vec![NetCommand::Trust { name: "bob".into() }]
        );
        type_text(&mut app, "/help");
        app.on_key(key(KeyCode::Enter));
        assert_eq!(app.popup, Some(Popup::Help));
        app.on_key(key(KeyCode::Esc));
        assert_eq!(app.popup, None);
    }

    #[test]
    fn bad_commands_keep_the_input() {
        let mut app = app_with(&["alice"]);
        type_text(&mut app, "/add");
        assert!(app.on_key(key(KeyCode::Enter)).is_empty());
        assert_eq!(app.input, "/add");
        assert!(app.notice.as_ref().is_some_and(|n| n.error));
        app.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
        type_text(&mut app, "/nope");
        assert!(app.on_key(key(KeyCode::Enter)).is_empty());
        assert!(app.notice.as_ref().unwrap().text.contains("/nope"));
        // "//" sends a text starting with "/".
        app.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
        type_text(&mut app, "//shrug");
        assert_eq!(
            app.on_key(key(KeyCode::Enter)),
            vec![NetCommand::Send {
                contact: "alice".into(),
                text: "/shrug".into()
            }]
        );
    }

    #[test]
    fn sending_to_a_changed_key_is_blocked_locally() {
        let mut app = App::new("me", None);
        let mut bob = contact("bob", 0);
        bob.changed_key = Some("11".repeat(32));
        app.on_net_event(NetEvent::Contacts(vec![bob]));
        type_text(&mut app, "hi");
        assert!(app.on_key(key(KeyCode::Enter)).is_empty());
        assert_eq!(app.input, "hi");
        assert!(app.notice.as_ref().unwrap().error);
    }

    #[test]
    fn the_named_contact_is_selected_or_added() {
        let mut app = App::new("me", Some("carol".into()));
        let out = app.on_net_event(NetEvent::Contacts(vec![contact("alice", 0)]));
        assert_eq!(
            out,
            vec![NetCommand::Add {
                name: "carol".into()
            }]
        );
        let mut app = App::new("me", Some("bob".into()));
        let out = app.on_net_event(NetEvent::Contacts(vec![
            contact("alice", 0),
            contact("bob", 2),
        ]));
        assert_eq!(app.selected.as_deref(), Some("bob"));
        assert!(out.contains(&NetCommand::MarkRead { name: "bob".into() }));
        assert_eq!(app.current().unwrap().unread, 0);
    }

    #[test]
    fn editing_keys_respect_multibyte_characters() {
        let mut app = app_with(&[]);
        type_text(&mut app, "héé");
        app.on_key(key(KeyCode::Left));
        app.on_key(key(KeyCode::Backspace));
        assert_eq!(app.input, "hé");
        app.on_key(key(KeyCode::Home));
        app.on_key(key(KeyCode::Delete));
        assert_eq!(app.input, "é");
        app.on_key(key(KeyCode::End));
        assert_eq!(app.cursor, app.input.len());
    }

    #[test]
    fn failed_send_gives_the_text_back() {
        let mut app = app_with(&["alice"]);
        type_text(&mut app, "hello");
        app.on_key(key(KeyCode::Enter));
        app.on_net_event(NetEvent::SendDone {
            contact: "alice".into(),
            error: Some("boom".into()),
        });
        assert_eq!(app.input, "hello");
        assert!(app.current_entries().is_empty());
    }

    #[test]
    fn an_undeliverable_message_is_announced_as_an_error() {
        let mut app = app_with(&["bob"]);
        app.on_net_event(NetEvent::Received(Event::Failed {
            contact: "bob".into(),
            id: "00".repeat(16),
            reason: "no such recipient on the relay (unknown_user)".into(),
        }));
        let notice = app.notice.as_ref().unwrap();
        assert!(notice.error);
        assert_eq!(
            notice.text,
            "a message to bob failed: no such recipient on the relay (unknown_user)"
        );
    }
}
