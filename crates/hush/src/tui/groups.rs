//! Groups in `hush chat`: listed as `#name` after the contacts, selected and written to like a
//! contact (the selection, the conversation and the send target are the client's `#NAME`),
//! a members popup (`/members`), and system lines for joins, removals and key changes.
//! System lines live in memory only (the client does not store them in the history): they
//! show what happened while the UI was open; `hush group members` shows the state any time.

use hush_client::{DeliveryState, GroupChange, GroupInfo, HistoryEntry, MemberState};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

use super::app::{now_ms, App};
use super::keys;
use super::net::NetCommand;
use crate::sanitize;

const ALERT: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
const SYSTEM: Style = Style::new().fg(Color::Magenta);
const DIM: Style = Style::new().fg(Color::DarkGray);
const GOOD: Style = Style::new().fg(Color::Green);
const WARN: Style = Style::new().fg(Color::Yellow);

/// Most system lines kept per group (oldest dropped first).
pub const MAX_SYSTEM_LINES: usize = 500;

/// A line in a group conversation that is not a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemLine {
    /// When it happened (ms, our clock).
    pub at: u64,
    /// What happened (names sanitised).
    pub text: String,
    /// Whether it warns (a member under a key we do not trust, our removal).
    pub alert: bool,
}

/// The selection (and history) name of a group.
pub fn key(group: &str) -> String {
    format!("#{group}")
}

/// What a group change says in the conversation, without the CLI's `#NAME * ` prefix.
pub fn system_text(group: &str, change: &GroupChange) -> String {
    if let GroupChange::MemberKeyChanged { member } = change {
        let m = sanitize::line(member);
        return keys::group_member_key_changed(&m);
    }
    let full = crate::cli_group::change_text(group, change);
    let prefix = format!("#{} * ", sanitize::line(group));
    full.strip_prefix(&prefix)
        .map(str::to_owned)
        .unwrap_or(full)
}

impl App {
    /// The selected group.
    pub fn current_group(&self) -> Option<&GroupInfo> {
        let name = self.selected.as_deref()?.strip_prefix('#')?;
        self.groups.iter().find(|g| g.name == name)
    }

    /// Everything selectable, in list order: contacts, then `#group`s.
    pub fn entry_names(&self) -> Vec<String> {
        let contacts = self.contacts.iter().map(|c| c.name.clone());
        contacts
            .chain(self.groups.iter().map(|g| key(&g.name)))
            .collect()
    }

    /// System lines of the selected conversation, oldest first.
    pub fn current_system_lines(&self) -> &[SystemLine] {
        self.selected
            .as_deref()
            .and_then(|name| self.system.get(name))
            .map_or(&[], Vec::as_slice)
    }

    pub(super) fn set_groups(&mut self, list: Vec<GroupInfo>) -> Vec<NetCommand> {
        self.groups = list;
        if let Some(wanted) = self.wanted.take_if(|w| w.starts_with('#')) {
            if self.groups.iter().any(|g| key(&g.name) == wanted) {
                return self.select(&wanted);
            }
            self.post(keys::no_such_group(&wanted), true);
        }
        if self.selected.is_none() {
            if let Some(first) = self.entry_names().first().cloned() {
                return self.select(&first);
            }
        }
        self.read_group().into_iter().collect()
    }

    /// The selected group is being looked at: its unread count goes to zero.
    pub(super) fn read_group(&mut self) -> Option<NetCommand> {
        let name = self.selected.clone()?;
        let bare = name.strip_prefix('#')?;
        let group = self.groups.iter_mut().find(|g| g.name == bare)?;
        if group.unread == 0 {
            return None;
        }
        group.unread = 0;
        Some(NetCommand::MarkRead { name })
    }

    /// A group change: a system line in its conversation, and a notice unless it is open.
    pub(super) fn on_group_change(&mut self, group: &str, change: &GroupChange) {
        let text = system_text(group, change);
        let alert = matches!(
            change,
            GroupChange::MemberKeyChanged { .. } | GroupChange::WeWereRemoved { .. }
        );
        let lines = self.system.entry(key(group)).or_default();
        if lines.len() >= MAX_SYSTEM_LINES {
            lines.remove(0);
        }
        lines.push(SystemLine {
            at: now_ms(),
            text: text.clone(),
            alert,
        });
        if self.selected.as_deref() != Some(key(group).as_str()) {
            let notice = format!("#{}: {text}", sanitize::line(group));
            self.post(notice, alert);
        }
    }

    /// Enter in a group: shown at once as queued, like a message to a contact.
    pub(super) fn send_group(&mut self, text: String) -> Vec<NetCommand> {
        let Some(group) = self.current_group() else {
            return Vec::new();
        };
        if group.gone.is_some() {
            let notice = keys::group_gone(&group.name);
            self.post(notice, true);
            return Vec::new();
        }
        let name = key(&group.name);
        let entry = HistoryEntry {
            id: String::new(),
            contact: name.clone(),
            outgoing: true,
            text: text.clone(),
            sent_at: now_ms(),
            received_at: None,
            state: DeliveryState::Queued,
            verified: false,
            key_changed: false,
            failure: None,
            group: Some(group.name.clone()),
        };
        self.pending.entry(name.clone()).or_default().push(entry);
        self.input.clear();
        self.cursor = 0;
        self.scroll = 0;
        vec![NetCommand::Send {
            contact: name,
            text,
        }]
    }

    /// `/members [NAME]`: the members popup of a group (the selected one without NAME).
    pub(super) fn members_command(&mut self, name: Option<&str>) -> Option<NetCommand> {
        let name = match name {
            Some(n) => n.trim_start_matches('#').to_owned(),
            None => self.current_group()?.name.clone(),
        };
        Some(NetCommand::GroupMembers { name })
    }
}

/// The group entries of the left pane.
pub fn list_lines(app: &App) -> Vec<Line<'static>> {
    app.groups
        .iter()
        .map(|g| {
            let style = if g.gone.is_some() {
                DIM
            } else if g.members.iter().any(|m| m.state == MemberState::KeyChanged) {
                ALERT
            } else {
                Style::new()
            };
            let mut spans = vec![Span::styled(
                format!("  #{}", sanitize::line(&g.name)),
                style,
            )];
            if g.unread > 0 {
                spans.push(Span::styled(
                    format!(" ({})", g.unread),
                    WARN.add_modifier(Modifier::BOLD),
                ));
            }
            Line::from(spans)
        })
        .collect()
}

/// Title and style of a group conversation.
pub fn conversation_title(group: &GroupInfo) -> (String, Style) {
    let name = sanitize::line(&group.name);
    match &group.gone {
        Some(why) => (keys::group_title_gone(&name, &sanitize::line(why)), DIM),
        None => {
            let changed = group
                .members
                .iter()
                .any(|m| m.state == MemberState::KeyChanged);
            let style = if changed { ALERT } else { SYSTEM };
            (
                keys::group_title(&name, group.members.len(), changed),
                style,
            )
        }
    }
}

/// A system line as styled segments for the conversation's word wrap.
pub fn system_segments(line: &SystemLine) -> Vec<(String, Style)> {
    let style = if line.alert { ALERT } else { SYSTEM };
    vec![
        (format!("{} ", super::ui::hhmm(line.at)), DIM),
        (format!("* {}", line.text), style),
    ]
}

/// Title, lines and border of the members popup.
pub fn members_popup(group: &GroupInfo) -> (String, Vec<Line<'static>>, Style) {
    let name = sanitize::line(&group.name);
    let mut lines = Vec::new();
    if let Some(why) = &group.gone {
        lines.push(Line::styled(
            keys::group_gone_reason(&sanitize::line(why)),
            DIM,
        ));
        return (keys::members_title(&name), lines, Style::new());
    }
    let mut border = Style::new();
    for m in &group.members {
        let style = match m.state {
            MemberState::KeyChanged => {
                border = ALERT;
                ALERT
            }
            MemberState::NotAContact => WARN,
            MemberState::Verified => GOOD,
            MemberState::You | MemberState::Known => Style::new(),
        };
        lines.push(Line::from(vec![
            Span::styled(format!("  {:<20}", sanitize::line(&m.name)), style),
            Span::styled(format!("{:<15}", m.state.label()), style),
            Span::styled(fingerprint(&m.identity_key), DIM),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        keys::epoch_line(
            group.epoch.unwrap_or_default(),
            group.epoch_authenticator.as_deref().unwrap_or(""),
        ),
        DIM,
    ));
    (keys::members_title(&name), lines, border)
}

/// A short fingerprint of a hex identity key (the same as `hush whoami` prints).
fn fingerprint(key_hex: &str) -> String {
    hex::decode(key_hex)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| hush_proto::IdentityPublicKey::from_bytes(&b).ok())
        .map(|k| k.fingerprint().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::app::Popup;
    use crate::tui::net::NetEvent;
    use crate::tui::test_support::contact;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use hush_client::{Event, GroupMember};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn team(members: &[(&str, MemberState)]) -> GroupInfo {
        GroupInfo {
            name: "team".into(),
            id: "ab".repeat(16),
            gone: None,
            unread: 2,
            epoch: Some(3),
            epoch_authenticator: Some("cd".repeat(32)),
            members: members
                .iter()
                .map(|(name, state)| GroupMember {
                    name: (*name).to_owned(),
                    identity_key: "00".repeat(32),
                    state: *state,
                })
                .collect(),
        }
    }

    fn screen(app: &App) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
        terminal.draw(|f| super::super::ui::draw(app, f)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer.cell((x, y)).unwrap().symbol())
                    .collect()
            })
            .collect()
    }

    fn find(screen: &[String], needle: &str) -> Option<(usize, usize)> {
        screen.iter().enumerate().find_map(|(y, line)| {
            line.find(needle)
                .map(|byte| (y, line[..byte].chars().count()))
        })
    }

    fn key_press(app: &mut App, code: KeyCode) -> Vec<NetCommand> {
        app.on_key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    #[test]
    fn a_group_is_listed_after_the_contacts_and_shows_messages_and_system_lines() {
        let mut app = App::new("me", None);
        app.size = (100, 30);
        app.on_net_event(NetEvent::Contacts(vec![
            contact("alice", 0),
            contact("bob", 0),
        ]));
        app.on_net_event(NetEvent::Groups(vec![team(&[
            ("me", MemberState::You),
            ("alice", MemberState::Verified),
            ("bob", MemberState::Known),
        ])]));
        let before = screen(&app);
        let (bob_row, _) = find(&before, "bob").unwrap();
        let (team_row, team_col) = find(&before, "#team (2)").unwrap();
        assert!(team_row > bob_row, "groups come after the contacts");
        assert!(team_col < 28, "in the left pane");

        // Down twice: alice -> bob -> #team, which loads its history and clears its unread.
        key_press(&mut app, KeyCode::Down);
        let out = key_press(&mut app, KeyCode::Down);
        assert_eq!(app.selected.as_deref(), Some("#team"));
        assert!(out.contains(&NetCommand::LoadHistory {
            name: "#team".into()
        }));
        assert!(out.contains(&NetCommand::MarkRead {
            name: "#team".into()
        }));

        let mut hello = HistoryEntry {
            id: "11".repeat(16),
            contact: "alice".into(),
            outgoing: false,
            text: "hello team".into(),
            sent_at: now_ms().saturating_sub(60_000),
            received_at: Some(now_ms().saturating_sub(60_000)),
            state: DeliveryState::Received,
            verified: true,
            key_changed: false,
            failure: None,
            group: Some("team".into()),
        };
        app.on_net_event(NetEvent::History {
            contact: "#team".into(),
            entries: vec![hello.clone()],
        });
        app.on_net_event(NetEvent::Received(Event::Group {
            group: "team".into(),
            change: GroupChange::Added {
                by: "alice".into(),
                members: vec!["carol".into()],
            },
        }));
        app.on_net_event(NetEvent::Received(Event::Group {
            group: "team".into(),
            change: GroupChange::MemberKeyChanged {
                member: "carol".into(),
            },
        }));
        hello.text = "later".into();
        let shown = screen(&app);
        let (title_row, _) = find(&shown, "#team · 3 members").unwrap();
        let (message_row, _) = find(&shown, "alice: hello team").unwrap();
        let (added_row, _) = find(&shown, "* alice added carol").unwrap();
        let (warning_row, _) = find(&shown, "* WARNING: carol's key").unwrap();
        assert!(title_row < message_row && message_row < added_row && added_row < warning_row);

        // Sending goes to '#team'.
        for c in "hi all".chars() {
            key_press(&mut app, KeyCode::Char(c));
        }
        let out = key_press(&mut app, KeyCode::Enter);
        assert_eq!(
            out,
            vec![NetCommand::Send {
                contact: "#team".into(),
                text: "hi all".into()
            }]
        );
        assert!(find(&screen(&app), "me: hi all  · queued").is_some());
    }

    #[test]
    fn a_group_named_on_the_command_line_is_opened_once_groups_arrive() {
        let mut app = App::new("me", Some("#team".into()));
        let out = app.on_net_event(NetEvent::Contacts(vec![contact("alice", 0)]));
        assert!(
            !out.iter().any(|c| matches!(c, NetCommand::Add { .. })),
            "a group is never added as a contact: {out:?}"
        );
        let out = app.on_net_event(NetEvent::Groups(vec![team(&[])]));
        assert_eq!(app.selected.as_deref(), Some("#team"));
        assert!(out.contains(&NetCommand::LoadHistory {
            name: "#team".into()
        }));
        let mut app = App::new("me", Some("#nope".into()));
        app.on_net_event(NetEvent::Contacts(Vec::new()));
        app.on_net_event(NetEvent::Groups(vec![team(&[])]));
        assert!(app.notice.as_ref().is_some_and(|n| n.error));
    }

    #[test]
    fn members_popup_shows_each_state_and_a_change_elsewhere_is_a_notice() {
        let mut app = App::new("me", None);
        app.size = (100, 30);
        app.on_net_event(NetEvent::Contacts(vec![contact("alice", 0)]));
        let info = team(&[
            ("me", MemberState::You),
            ("alice", MemberState::KeyChanged),
            ("zed", MemberState::NotAContact),
        ]);
        app.on_net_event(NetEvent::Groups(vec![info.clone()]));
        assert_eq!(app.selected.as_deref(), Some("alice"));
        for c in "/members team".chars() {
            key_press(&mut app, KeyCode::Char(c));
        }
        assert_eq!(
            key_press(&mut app, KeyCode::Enter),
            vec![NetCommand::GroupMembers {
                name: "team".into()
            }]
        );
        app.on_net_event(NetEvent::GroupMembers(info));
        assert!(matches!(app.popup, Some(Popup::Members(_))));
        let shown = screen(&app);
        assert!(find(&shown, "alice").is_some());
        assert!(shown
            .iter()
            .any(|l| l.contains("alice") && l.contains("KEY CHANGED")));
        assert!(shown
            .iter()
            .any(|l| l.contains("zed") && l.contains("not a contact")));
        assert!(find(&shown, "epoch 3").is_some());

        app.popup = None;
        app.on_net_event(NetEvent::Received(Event::Group {
            group: "team".into(),
            change: GroupChange::WeWereRemoved { by: "alice".into() },
        }));
        let notice = app.notice.as_ref().unwrap();
        assert!(notice.error);
        assert!(
            notice.text.starts_with("#team: alice removed you"),
            "{}",
            notice.text
        );
    }
}
