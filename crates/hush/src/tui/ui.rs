//! Drawing `hush chat`: a pure function of [`App`] (it cannot change state), plus the layout
//! arithmetic that paging needs. Text from the network is drawn with control characters
//! replaced, so a peer cannot send escape sequences to the terminal.

use chrono::TimeZone;
use ratatui::layout::{Alignment, Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;
use unicode_width::UnicodeWidthChar;

use hush_client::{DeliveryState, HistoryEntry};

use super::app::{App, Popup};
use super::keys;
// Characters that must not reach the terminal: the same rule as the CLI's (names are drawn
// through `sanitize::line` too, though only valid names should ever reach a contact).
use crate::sanitize::{self, displayable};

/// Most input lines shown before the input box scrolls.
pub const INPUT_MAX_LINES: usize = 6;
/// Widest contact list.
pub const CONTACTS_WIDTH: u16 = 28;
/// Continuation lines of a message are indented past the time.
const INDENT: usize = 6;

const BANNER: Style = Style::new()
    .fg(Color::White)
    .bg(Color::Red)
    .add_modifier(Modifier::BOLD);
const STATUS_BAR: Style = Style::new().fg(Color::White).bg(Color::DarkGray);
const DIM: Style = Style::new().fg(Color::DarkGray);
const ALERT: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
const GOOD: Style = Style::new().fg(Color::Green);
const WARN: Style = Style::new().fg(Color::Yellow);

/// Where everything goes.
struct Areas {
    banner: Rect,
    contacts: Rect,
    conversation: Rect,
    input: Rect,
    status: Rect,
}

fn key_changed(app: &App) -> bool {
    app.current().is_some_and(|c| c.changed_key.is_some())
}

fn layout(app: &App, area: Rect) -> Areas {
    let input_lines = app.input.split('\n').count().clamp(1, INPUT_MAX_LINES);
    let banner_height = u16::from(key_changed(app));
    let [banner, main, input, status] = Layout::vertical([
        Constraint::Length(banner_height),
        Constraint::Min(3),
        Constraint::Length(u16::try_from(input_lines).unwrap_or(1) + 2),
        Constraint::Length(1),
    ])
    .areas(area);
    let contacts_width = CONTACTS_WIDTH.min(main.width / 3);
    let [contacts, conversation] =
        Layout::horizontal([Constraint::Length(contacts_width), Constraint::Min(10)]).areas(main);
    Areas {
        banner,
        contacts,
        conversation,
        input,
        status,
    }
}

fn inner(area: Rect) -> Rect {
    Block::default().borders(Borders::ALL).inner(area)
}

fn conversation_inner(app: &App) -> Rect {
    let (w, h) = app.size;
    inner(layout(app, Rect::new(0, 0, w, h)).conversation)
}

/// Lines one PgUp/PgDn moves.
pub fn page_lines(app: &App) -> usize {
    usize::from(conversation_inner(app).height)
        .saturating_sub(1)
        .max(1)
}

/// How far back the selected conversation can be scrolled.
pub fn max_scroll(app: &App) -> usize {
    let area = conversation_inner(app);
    conversation_lines(app, area.width)
        .len()
        .saturating_sub(usize::from(area.height))
}

/// Draw the whole screen.
pub fn draw(app: &App, frame: &mut Frame) {
    let areas = layout(app, frame.area());
    draw_banner(app, frame, areas.banner);
    draw_contacts(app, frame, areas.contacts);
    draw_conversation(app, frame, areas.conversation);
    draw_input(app, frame, areas.input);
    draw_status(app, frame, areas.status);
    if let Some(popup) = &app.popup {
        draw_popup(popup, frame, frame.area());
    }
}

fn draw_banner(app: &App, frame: &mut Frame, area: Rect) {
    if area.height == 0 {
        return;
    }
    if let Some(contact) = app.current().filter(|c| c.changed_key.is_some()) {
        let text = keys::key_changed_banner(&sanitize::line(&contact.name));
        frame.render_widget(
            Paragraph::new(text)
                .style(BANNER)
                .alignment(Alignment::Center),
            area,
        );
    }
}

fn draw_contacts(app: &App, frame: &mut Frame, area: Rect) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(keys::CONTACTS_TITLE);
    if app.contacts.is_empty() && app.groups.is_empty() {
        frame.render_widget(
            Paragraph::new(keys::NO_CONTACTS)
                .style(DIM)
                .wrap(Wrap { trim: true })
                .block(block),
            area,
        );
        return;
    }
    let items: Vec<ListItem> = app
        .contacts
        .iter()
        .map(|c| {
            let mut spans = Vec::new();
            if c.changed_key.is_some() {
                spans.push(Span::styled(keys::MARK_KEY_CHANGED, ALERT));
                spans.push(Span::raw(" "));
                spans.push(Span::styled(sanitize::line(&c.name), ALERT));
                spans.push(Span::styled(format!(" {}", keys::KEY_CHANGED), ALERT));
            } else {
                let mark = if c.verified {
                    Span::styled(keys::MARK_VERIFIED, GOOD)
                } else {
                    Span::raw(keys::MARK_NONE)
                };
                spans.push(mark);
                spans.push(Span::raw(" "));
                spans.push(Span::raw(sanitize::line(&c.name)));
            }
            if c.unread > 0 {
                spans.push(Span::styled(
                    format!(" ({})", c.unread),
                    WARN.add_modifier(Modifier::BOLD),
                ));
            }
            ListItem::new(Line::from(spans))
        })
        .chain(
            super::groups::list_lines(app)
                .into_iter()
                .map(ListItem::new),
        )
        .collect();
    let selected = app
        .selected
        .as_deref()
        .and_then(|name| app.entry_names().iter().position(|n| n == name));
    let mut state = ListState::default().with_selected(selected);
    let list = List::new(items)
        .block(block)
        .highlight_style(Style::new().bg(Color::Blue).add_modifier(Modifier::BOLD));
    frame.render_stateful_widget(list, area, &mut state);
}

fn contact_status(app: &App) -> Option<(&'static str, Style)> {
    let contact = app.current()?;
    Some(if contact.changed_key.is_some() {
        (keys::KEY_CHANGED, ALERT)
    } else if contact.verified {
        (keys::VERIFIED, GOOD)
    } else {
        (keys::UNVERIFIED, WARN)
    })
}

fn draw_conversation(app: &App, frame: &mut Frame, area: Rect) {
    let title = match (app.current_group(), app.current()) {
        (Some(group), _) => super::groups::conversation_title(group),
        (None, Some(contact)) => {
            let (status, style) = contact_status(app).unwrap_or((keys::UNVERIFIED, WARN));
            let name = sanitize::line(&contact.name);
            (keys::conversation_title(&name, status), style)
        }
        (None, None) => {
            let block = Block::default()
                .borders(Borders::ALL)
                .title(keys::NO_CONVERSATION_TITLE);
            frame.render_widget(
                Paragraph::new(keys::NO_CONVERSATION)
                    .style(DIM)
                    .wrap(Wrap { trim: true })
                    .block(block),
                area,
            );
            return;
        }
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(title.0, title.1));
    let body = block.inner(area);
    frame.render_widget(block, area);
    let lines = conversation_lines(app, body.width);
    if lines.is_empty() {
        frame.render_widget(Paragraph::new(keys::EMPTY_CONVERSATION).style(DIM), body);
        return;
    }
    let height = usize::from(body.height);
    let scroll = app.scroll.min(lines.len().saturating_sub(height));
    let start = lines.len().saturating_sub(height + scroll);
    let visible: Vec<Line> = lines.into_iter().skip(start).take(height).collect();
    frame.render_widget(Paragraph::new(visible), body);
}

/// Local wall-clock time of a timestamp in ms, as HH:MM.
pub fn hhmm(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| chrono::Local.timestamp_millis_opt(ms).single())
        .map(|t| t.format("%H:%M").to_string())
        .unwrap_or_else(|| "--:--".to_owned())
}

fn state_style(state: DeliveryState) -> Style {
    match state {
        DeliveryState::Queued => WARN,
        DeliveryState::OnRelay => DIM,
        DeliveryState::Delivered => GOOD,
        DeliveryState::Received => DIM,
        DeliveryState::Failed => ALERT,
    }
}

/// The selected conversation as screen lines of `width` columns, oldest first.
pub fn conversation_lines(app: &App, width: u16) -> Vec<Line<'static>> {
    let entries = app.current_entries();
    let width = usize::from(width);
    // A group's system lines go between its messages, by time.
    let mut system = app.current_system_lines().iter().peekable();
    let mut lines = Vec::new();
    for entry in entries {
        let at = entry.received_at.unwrap_or(entry.sent_at);
        while let Some(line) = system.next_if(|s| s.at <= at) {
            lines.extend(wrap(&super::groups::system_segments(line), width));
        }
        lines.extend(wrap(&message_segments(entry), width));
    }
    for line in system {
        lines.extend(wrap(&super::groups::system_segments(line), width));
    }
    lines
}

fn message_segments(entry: &HistoryEntry) -> Vec<(String, Style)> {
    let time = if entry.outgoing {
        entry.sent_at
    } else {
        entry.received_at.unwrap_or(entry.sent_at)
    };
    let mut segments = vec![(format!("{} ", hhmm(time)), DIM)];
    if entry.outgoing {
        segments.push((
            format!("{}: ", keys::ME),
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        ));
    } else {
        if entry.key_changed {
            segments.push((keys::MESSAGE_KEY_CHANGED.to_owned(), ALERT));
        }
        segments.push((
            format!("{}: ", entry.contact),
            Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
        ));
    }
    segments.push((entry.text.clone(), Style::new()));
    if entry.outgoing {
        segments.push((
            keys::state_marker(entry.state, entry.failure.as_deref()),
            state_style(entry.state),
        ));
    }
    segments
}

/// Greedy word wrap of styled text; `\n` starts a new line; continuation lines are indented.
fn wrap(segments: &[(String, Style)], width: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let indent = if width > INDENT * 2 { INDENT } else { 0 };
    let indented = || vec![(' ', Style::new()); indent];
    let mut lines: Vec<Vec<(char, Style)>> = vec![Vec::new()];
    let mut used = 0usize;
    for (text, style) in segments {
        for c in text.chars() {
            if c == '\n' {
                lines.push(indented());
                used = indent;
                continue;
            }
            let c = displayable(c);
            let w = c.width().unwrap_or(0);
            if used + w > width && used > indent {
                // Carry the last partial word over when the line has a space to break at.
                let carry = match lines.last_mut() {
                    Some(line) => match line.iter().rposition(|(ch, _)| *ch == ' ') {
                        Some(pos) if pos >= indent && pos + 1 < line.len() => {
                            line.split_off(pos + 1)
                        }
                        _ => Vec::new(),
                    },
                    None => Vec::new(),
                };
                let mut next = indented();
                used = indent
                    + carry
                        .iter()
                        .map(|(ch, _)| ch.width().unwrap_or(0))
                        .sum::<usize>();
                next.extend(carry);
                lines.push(next);
            }
            if let Some(line) = lines.last_mut() {
                line.push((c, *style));
            }
            used += w;
        }
    }
    lines.into_iter().map(styled_line).collect()
}

fn styled_line(chars: Vec<(char, Style)>) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut text = String::new();
    let mut current: Option<Style> = None;
    for (c, style) in chars {
        if current.is_some_and(|s| s != style) {
            spans.push(Span::styled(
                std::mem::take(&mut text),
                current.unwrap_or_default(),
            ));
        }
        current = Some(style);
        text.push(c);
    }
    if let Some(style) = current {
        spans.push(Span::styled(text, style));
    }
    Line::from(spans)
}

fn draw_input(app: &App, frame: &mut Frame, area: Rect) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(keys::INPUT_TITLE);
    let body = block.inner(area);
    frame.render_widget(block, area);
    let before = app.input.get(..app.cursor).unwrap_or(&app.input);
    let line = before.matches('\n').count();
    let column: usize = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| displayable(c).width().unwrap_or(0))
        .sum();
    let height = usize::from(body.height.max(1));
    let width = usize::from(body.width.max(1));
    let top = line.saturating_sub(height - 1);
    let left = column.saturating_sub(width - 1);
    let text: Text = app
        .input
        .split('\n')
        .map(|l| Line::raw(l.chars().map(displayable).collect::<String>()))
        .collect();
    let scroll = (
        u16::try_from(top).unwrap_or(u16::MAX),
        u16::try_from(left).unwrap_or(u16::MAX),
    );
    frame.render_widget(Paragraph::new(text).scroll(scroll), body);
    if app.popup.is_none() {
        let x = body.x + u16::try_from(column - left).unwrap_or(0);
        let y = body.y + u16::try_from(line - top).unwrap_or(0);
        frame.set_cursor_position(Position::new(x, y));
    }
}

fn draw_status(app: &App, frame: &mut Frame, area: Rect) {
    let mut spans = vec![if app.connected {
        Span::styled(keys::STATUS_CONNECTED, GOOD.bg(Color::DarkGray))
    } else {
        Span::styled(keys::STATUS_DISCONNECTED, ALERT.bg(Color::DarkGray))
    }];
    if let (Some(contact), Some((status, style))) = (app.current(), contact_status(app)) {
        spans.push(Span::raw(" │ "));
        spans.push(Span::raw(format!("{}: ", sanitize::line(&contact.name))));
        spans.push(Span::styled(status, style.bg(Color::DarkGray)));
    }
    if let Some(notice) = &app.notice {
        spans.push(Span::raw(" │ "));
        let style = if notice.error {
            Style::new()
                .fg(Color::LightRed)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(Color::LightYellow)
        };
        spans.push(Span::styled(
            notice.text.chars().map(displayable).collect::<String>(),
            style,
        ));
    }
    let me = keys::status_me(&app.me);
    let me_width = u16::try_from(me.chars().count()).unwrap_or(0);
    let [left, right] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(me_width)]).areas(area);
    frame.render_widget(Paragraph::new(Line::from(spans)).style(STATUS_BAR), left);
    frame.render_widget(
        Paragraph::new(me)
            .style(STATUS_BAR)
            .alignment(Alignment::Right),
        right,
    );
}

fn popup_area(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    )
}

fn draw_popup(popup: &Popup, frame: &mut Frame, area: Rect) {
    let (title, lines, border) = match popup {
        Popup::Help => {
            let mut lines = vec![Line::styled(
                keys::HELP_COMMANDS,
                Style::new().add_modifier(Modifier::BOLD),
            )];
            let row = |(k, v): &(&str, &str)| {
                Line::from(vec![
                    Span::styled(format!("  {k:<22}"), Style::new().fg(Color::Cyan)),
                    Span::raw(v.to_string()),
                ])
            };
            lines.extend(keys::COMMAND_HELP.iter().map(row));
            lines.push(Line::raw(""));
            lines.push(Line::styled(
                keys::HELP_KEYS,
                Style::new().add_modifier(Modifier::BOLD),
            ));
            lines.extend(keys::KEY_HELP.iter().map(row));
            (keys::HELP_TITLE.to_owned(), lines, Style::new())
        }
        Popup::Safety {
            contact,
            grouped,
            key_changed,
        } => {
            let mut lines = vec![Line::raw("")];
            lines.extend(grouped.lines().map(|l| {
                Line::styled(
                    format!("    {l}"),
                    Style::new().add_modifier(Modifier::BOLD),
                )
            }));
            lines.push(Line::raw(""));
            let style = if *key_changed { ALERT } else { Style::new() };
            let contact = &sanitize::line(contact);
            lines.extend(
                keys::safety_instructions(contact, *key_changed)
                    .into_iter()
                    .map(|l| Line::styled(l, style)),
            );
            let border = if *key_changed { ALERT } else { Style::new() };
            (keys::safety_title(contact), lines, border)
        }
        Popup::Members(group) => super::groups::members_popup(group),
    };
    let content_width = lines.iter().map(Line::width).max().unwrap_or(0);
    let width = u16::try_from(content_width + 4).unwrap_or(u16::MAX).max(30);
    let height = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    let rect = popup_area(area, width, height);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(border)
        .title(title)
        .title_bottom(Line::styled(keys::POPUP_CLOSE, DIM).right_aligned());
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        rect,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::net::NetEvent;
    use hush_client::Contact;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::Terminal;

    use crate::tui::test_support::contact;

    fn message(contact: &str, outgoing: bool, text: &str, state: DeliveryState) -> HistoryEntry {
        HistoryEntry {
            id: "00".repeat(16),
            contact: contact.to_owned(),
            outgoing,
            text: text.to_owned(),
            sent_at: 1_700_000_000_000,
            received_at: (!outgoing).then_some(1_700_000_060_000),
            state,
            verified: false,
            key_changed: false,
            failure: None,
            group: None,
        }
    }

    fn app(contacts: Vec<Contact>) -> App {
        let mut app = App::new("me", None);
        app.size = (100, 30);
        app.on_net_event(NetEvent::Contacts(contacts));
        app
    }

    fn render(app: &App) -> Buffer {
        let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
        terminal.draw(|f| draw(app, f)).unwrap();
        terminal.backend().buffer().clone()
    }

    fn row(buffer: &Buffer, y: u16) -> String {
        (0..buffer.area.width)
            .map(|x| buffer.cell((x, y)).unwrap().symbol())
            .collect()
    }

    fn screen(buffer: &Buffer) -> Vec<String> {
        (0..buffer.area.height).map(|y| row(buffer, y)).collect()
    }

    /// (row, column) of the first occurrence of `needle`, in characters.
    fn find(buffer: &Buffer, needle: &str) -> Option<(u16, u16)> {
        screen(buffer).iter().enumerate().find_map(|(y, line)| {
            line.find(needle).map(|byte| {
                let x = line[..byte].chars().count();
                (y as u16, x as u16)
            })
        })
    }

    fn contains(buffer: &Buffer, needle: &str) -> bool {
        find(buffer, needle).is_some()
    }

    #[test]
    fn contact_list_shows_unread_counts_and_markers() {
        let mut alice = contact("alice", 0);
        alice.verified = true;
        let mut mallory = contact("mallory", 0);
        mallory.changed_key = Some("11".repeat(32));
        let app = app(vec![alice, contact("bob", 3), mallory]);
        let buffer = render(&app);
        let (y, x) = find(&buffer, "bob (3)").unwrap();
        assert!(x < CONTACTS_WIDTH, "bob is in the left pane");
        assert_eq!(buffer.cell((x + 5, y)).unwrap().fg, Color::Yellow);
        assert!(contains(&buffer, "✓ alice"));
        let (y, x) = find(&buffer, "! mallory KEY CHANGED").unwrap();
        assert_eq!(buffer.cell((x, y)).unwrap().fg, Color::Red);
        // alice is selected (first) and has no unread count.
        assert!(!contains(&buffer, "alice ("));
    }

    #[test]
    fn outgoing_messages_show_their_delivery_state() {
        let mut app = app(vec![contact("alice", 0)]);
        app.on_net_event(NetEvent::History {
            contact: "alice".into(),
            entries: vec![
                message("alice", true, "first", DeliveryState::Delivered),
                message("alice", false, "reply", DeliveryState::Received),
                message("alice", true, "second", DeliveryState::OnRelay),
                message("alice", true, "third", DeliveryState::Queued),
            ],
        });
        let buffer = render(&app);
        let time = hhmm(1_700_000_000_000);
        assert!(contains(&buffer, &format!("{time} me: first  · delivered")));
        assert!(contains(&buffer, "me: second  · on relay"));
        assert!(contains(&buffer, "me: third  · queued"));
        let received = hhmm(1_700_000_060_000);
        assert!(contains(&buffer, &format!("{received} alice: reply")));
        assert!(!contains(&buffer, "reply  ·"), "incoming has no state");
        let (y, x) = find(&buffer, "· queued").unwrap();
        assert_eq!(buffer.cell((x + 2, y)).unwrap().fg, Color::Yellow);
    }

    #[test]
    fn a_failed_message_shows_why_in_red() {
        let mut app = app(vec![contact("bob", 0)]);
        let mut failed = message("bob", true, "into the void", DeliveryState::Failed);
        failed.failure = Some("no such recipient on the relay (unknown_user)".into());
        app.on_net_event(NetEvent::History {
            contact: "bob".into(),
            entries: vec![failed],
        });
        let buffer = render(&app);
        assert!(contains(
            &buffer,
            "me: into the void  · failed: no such recipient on the relay"
        ));
        let (y, x) = find(&buffer, "· failed").unwrap();
        assert_eq!(buffer.cell((x + 2, y)).unwrap().fg, Color::Red);
    }

    #[test]
    fn key_change_shows_a_red_banner_and_flags_messages() {
        let mut bob = contact("bob", 0);
        bob.changed_key = Some("11".repeat(32));
        let mut app = app(vec![bob]);
        let mut m = message("bob", false, "trust me", DeliveryState::Received);
        m.key_changed = true;
        app.on_net_event(NetEvent::History {
            contact: "bob".into(),
            entries: vec![m],
        });
        let buffer = render(&app);
        let banner = keys::key_changed_banner("bob");
        assert_eq!(
            banner,
            "bob's identity key changed — sending blocked. /verify then /trust"
        );
        let (y, x) = find(&buffer, &banner).unwrap();
        assert_eq!(y, 0, "the banner is across the top");
        for col in 0..buffer.area.width {
            assert_eq!(
                buffer.cell((col, 0)).unwrap().bg,
                Color::Red,
                "column {col}"
            );
        }
        assert_eq!(buffer.cell((x, y)).unwrap().fg, Color::White);
        let (y, x) = find(&buffer, "[KEY CHANGED] bob: trust me").unwrap();
        assert_eq!(buffer.cell((x, y)).unwrap().fg, Color::Red);
        let status = row(&buffer, 29);
        assert!(status.contains("bob: KEY CHANGED"), "{status}");
    }

    #[test]
    fn no_banner_without_a_key_change() {
        let app = app(vec![contact("alice", 0)]);
        let buffer = render(&app);
        assert!(!contains(&buffer, "identity key changed"));
        assert_ne!(buffer.cell((50, 0)).unwrap().bg, Color::Red);
    }

    #[test]
    fn status_bar_says_connected_or_not_and_verified_or_not() {
        let mut alice = contact("alice", 0);
        alice.verified = true;
        let mut app = app(vec![alice, contact("bob", 0)]);
        let status = row(&render(&app), 29);
        assert!(status.contains(keys::STATUS_DISCONNECTED), "{status}");
        assert!(status.contains("disconnected"));
        assert!(status.contains("alice: verified"), "{status}");
        app.on_net_event(NetEvent::Connection(true));
        app.select("bob");
        let status = row(&render(&app), 29);
        assert!(status.contains("relay connected"), "{status}");
        assert!(!status.contains("disconnected"));
        assert!(status.contains("bob: not verified"), "{status}");
    }

    #[test]
    fn help_popup_lists_commands_and_keys() {
        let mut app = app(vec![contact("alice", 0)]);
        app.popup = Some(Popup::Help);
        let buffer = render(&app);
        assert!(contains(&buffer, keys::HELP_TITLE.trim()));
        for (command, _) in keys::COMMAND_HELP {
            assert!(contains(&buffer, command), "{command}");
        }
        assert!(contains(&buffer, "Alt+Enter"));
        assert!(contains(&buffer, keys::POPUP_CLOSE));
    }

    #[test]
    fn safety_number_popup() {
        let mut app = app(vec![contact("alice", 0)]);
        app.on_net_event(NetEvent::SafetyNumber {
            contact: "alice".into(),
            grouped: "12345 67890 12345 67890\n11111 22222 33333 44444\n55555 66666 77777 88888"
                .into(),
            key_changed: false,
        });
        let buffer = render(&app);
        assert!(contains(&buffer, "Safety number with alice"));
        assert!(contains(&buffer, "11111 22222 33333 44444"));
        assert!(contains(&buffer, "/verify alice confirm"));
    }

    #[test]
    fn input_shows_multiple_lines_and_escapes_controls() {
        let mut app = app(vec![contact("alice", 0)]);
        app.paste("one\ntwo");
        app.on_net_event(NetEvent::History {
            contact: "alice".into(),
            entries: vec![message(
                "alice",
                false,
                "evil\u{1b}[2J\u{202e}text",
                DeliveryState::Received,
            )],
        });
        let buffer = render(&app);
        assert!(contains(&buffer, "│one"));
        assert!(contains(&buffer, "│two"));
        assert!(contains(&buffer, "alice: evil\u{fffd}[2J\u{fffd}text"));
        for y in 0..buffer.area.height {
            assert!(!row(&buffer, y).contains('\u{1b}'));
        }
    }

    #[test]
    fn long_messages_wrap_and_scroll() {
        let mut app = app(vec![contact("alice", 0)]);
        let entries = (0..60)
            .map(|i| {
                message(
                    "alice",
                    true,
                    &format!("message number {i}"),
                    DeliveryState::OnRelay,
                )
            })
            .collect();
        app.on_net_event(NetEvent::History {
            contact: "alice".into(),
            entries,
        });
        let buffer = render(&app);
        assert!(contains(&buffer, "message number 59"));
        assert!(!contains(&buffer, "message number 0 "));
        app.on_key(crossterm::event::KeyEvent::from(
            crossterm::event::KeyCode::PageUp,
        ));
        assert!(app.scroll > 0);
        let buffer = render(&app);
        assert!(!contains(&buffer, "message number 59"));
        for _ in 0..10 {
            app.on_key(crossterm::event::KeyEvent::from(
                crossterm::event::KeyCode::PageUp,
            ));
        }
        assert_eq!(app.scroll, max_scroll(&app));
        assert!(contains(&render(&app), "message number 0 "));

        let words = "lorem ipsum dolor sit amet ".repeat(10);
        let lines = wrap(&[(words, Style::new())], 40);
        assert!(lines.len() >= 7);
        assert!(lines.iter().all(|l| l.width() <= 40));
        assert!(lines
            .iter()
            .skip(1)
            .all(|l| l.to_string().starts_with("      ")));
    }
}
