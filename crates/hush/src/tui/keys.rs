//! Key bindings and every user-facing string of `hush chat`, in one place.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use hush_client::DeliveryState;

/// What a key press asks the UI to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Leave the UI.
    Quit,
    /// Send the input (or run it as a slash command).
    Submit,
    /// Insert a line break into the input.
    Newline,
    /// Select the next contact.
    NextContact,
    /// Select the previous contact.
    PrevContact,
    /// Scroll the conversation back.
    ScrollUp,
    /// Scroll the conversation forward.
    ScrollDown,
    /// Close the popup.
    Close,
    /// Delete the character before the cursor.
    Backspace,
    /// Delete the character under the cursor.
    Delete,
    /// Cursor left.
    Left,
    /// Cursor right.
    Right,
    /// Cursor to the start of the line.
    Home,
    /// Cursor to the end of the line.
    End,
    /// Clear the whole input.
    ClearInput,
    /// Type a character.
    Insert(char),
}

/// The binding of a key press, if any. Key releases are ignored (some terminals report them).
pub fn action(key: &KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    let action = match key.code {
        KeyCode::Char('c') if ctrl => Action::Quit,
        // Ctrl+J is a line feed: a newline for terminals that swallow Alt+Enter.
        KeyCode::Char('j') if ctrl => Action::Newline,
        KeyCode::Char('u') if ctrl => Action::ClearInput,
        KeyCode::Char('a') if ctrl => Action::Home,
        KeyCode::Char('e') if ctrl => Action::End,
        KeyCode::Char(c) if !ctrl && !alt => Action::Insert(c),
        KeyCode::Enter if alt || key.modifiers.contains(KeyModifiers::SHIFT) => Action::Newline,
        KeyCode::Enter => Action::Submit,
        KeyCode::Tab | KeyCode::Down => Action::NextContact,
        KeyCode::BackTab | KeyCode::Up => Action::PrevContact,
        KeyCode::PageUp => Action::ScrollUp,
        KeyCode::PageDown => Action::ScrollDown,
        KeyCode::Esc => Action::Close,
        KeyCode::Backspace => Action::Backspace,
        KeyCode::Delete => Action::Delete,
        KeyCode::Left => Action::Left,
        KeyCode::Right => Action::Right,
        KeyCode::Home => Action::Home,
        KeyCode::End => Action::End,
        _ => return None,
    };
    Some(action)
}

/// Key bindings as shown in the help popup.
pub const KEY_HELP: &[(&str, &str)] = &[
    ("Enter", "send the message"),
    ("Alt+Enter, Ctrl+J", "new line in the message"),
    ("Up/Down, Tab", "switch contact or #group"),
    ("PgUp/PgDn", "scroll the conversation"),
    ("Ctrl+U", "clear the input"),
    ("Esc", "close a popup"),
    ("Ctrl+C", "quit"),
];

/// Slash commands as shown in the help popup.
pub const COMMAND_HELP: &[(&str, &str)] = &[
    (
        "/add NAME",
        "add a contact (fetches their keys from the relay)",
    ),
    ("/verify [NAME]", "show the safety number to compare"),
    ("/verify NAME confirm", "mark NAME verified after comparing"),
    ("/trust NAME", "accept NAME's changed identity key"),
    (
        "/members [GROUP]",
        "a group's members: verified / known / KEY CHANGED / not a contact",
    ),
    ("/help", "this help"),
    ("/quit", "quit"),
    ("//text", "send text that starts with /"),
];

/// Slash command names.
pub mod cmd {
    /// Add a contact.
    pub const ADD: &str = "/add";
    /// Show a safety number, or confirm it.
    pub const VERIFY: &str = "/verify";
    /// The word after `/verify NAME` that marks the contact verified.
    pub const CONFIRM: &str = "confirm";
    /// Accept a changed key.
    pub const TRUST: &str = "/trust";
    /// Members of a group.
    pub const MEMBERS: &str = "/members";
    /// Help popup.
    pub const HELP: &str = "/help";
    /// Quit.
    pub const QUIT: &str = "/quit";
}

/// Title of the contact list.
pub const CONTACTS_TITLE: &str = " Contacts ";
/// Shown when there are no contacts.
pub const NO_CONTACTS: &str = "No contacts yet.\nType /add NAME";
/// Conversation title when no contact is selected.
pub const NO_CONVERSATION_TITLE: &str = " hush ";
/// Conversation body when no contact is selected.
pub const NO_CONVERSATION: &str = "Select a contact, or add one with /add NAME. /help for help.";
/// Conversation body when the conversation is empty.
pub const EMPTY_CONVERSATION: &str = "No messages yet. Type below and press Enter.";
/// Title of the input box.
pub const INPUT_TITLE: &str = " Message · Enter send · Alt+Enter new line · /help ";
/// Title of the help popup.
pub const HELP_TITLE: &str = " Help ";
/// Heading of the key list in the help popup.
pub const HELP_KEYS: &str = "Keys";
/// Heading of the command list in the help popup.
pub const HELP_COMMANDS: &str = "Commands";
/// Footer of every popup.
pub const POPUP_CLOSE: &str = "Esc to close";
/// Status: connected.
pub const STATUS_CONNECTED: &str = "● relay connected";
/// Status: disconnected.
pub const STATUS_DISCONNECTED: &str = "○ relay disconnected (messages are queued)";
/// Contact marker: verified.
pub const MARK_VERIFIED: &str = "✓";
/// Contact marker: key changed.
pub const MARK_KEY_CHANGED: &str = "!";
/// Contact marker: neither.
pub const MARK_NONE: &str = " ";
/// Status word: verified contact.
pub const VERIFIED: &str = "verified";
/// Status word: unverified contact.
pub const UNVERIFIED: &str = "not verified (/verify)";
/// Status word / flag: key changed.
pub const KEY_CHANGED: &str = "KEY CHANGED";
/// Flag on an incoming message that arrived under a changed key.
pub const MESSAGE_KEY_CHANGED: &str = "[KEY CHANGED] ";
/// How we are called in the conversation.
pub const ME: &str = "me";
/// Shown when the network task is gone.
pub const NET_STOPPED: &str = "the network task stopped unexpectedly";

/// Delivery state as shown after an outgoing message.
pub fn state_label(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Queued => "queued",
        DeliveryState::OnRelay => "on relay",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Received => "received",
        DeliveryState::Failed => "failed",
    }
}

/// Marker after an outgoing message: its state, with the reason when it failed.
pub fn state_marker(state: DeliveryState, failure: Option<&str>) -> String {
    match (state, failure) {
        (DeliveryState::Failed, Some(reason)) => format!("  · failed: {reason}"),
        (state, _) => format!("  · {}", state_label(state)),
    }
}

/// Notice for a message that will never be delivered.
pub fn message_failed(name: &str, reason: &str) -> String {
    format!("a message to {name} failed: {reason}")
}

/// The red banner for a contact whose identity key changed.
pub fn key_changed_banner(name: &str) -> String {
    format!("{name}'s identity key changed — sending blocked. /verify then /trust")
}

/// Notice when the user tries to send to a contact whose key changed.
pub fn send_blocked(name: &str) -> String {
    format!("cannot send: {name}'s identity key changed. /verify {name}, then /trust {name}")
}

/// Conversation title.
pub fn conversation_title(name: &str, status: &str) -> String {
    format!(" {name} · {status} ")
}

/// Right side of the status bar.
pub fn status_me(me: &str) -> String {
    format!("{me} · /help ")
}

/// Title of the safety-number popup.
pub fn safety_title(name: &str) -> String {
    format!(" Safety number with {name} ")
}

/// Body of the safety-number popup (after the number).
pub fn safety_instructions(name: &str, key_changed: bool) -> Vec<String> {
    if key_changed {
        vec![
            format!("WARNING: {name}'s identity key has CHANGED."),
            "This is the number for the NEW key.".to_owned(),
            format!("Compare it with {name} in person or by a call."),
            format!("If it matches: /trust {name}, then /verify {name} confirm"),
        ]
    } else {
        vec![
            format!("Compare it with {name} in person or by a call."),
            format!("If it matches: /verify {name} confirm"),
        ]
    }
}

/// Notice after adding a contact.
pub fn added(name: &str) -> String {
    format!("added {name}; compare safety numbers with /verify {name}")
}

/// Notice when adding needs the relay and it is unreachable.
pub fn add_offline(name: &str) -> String {
    format!("cannot add {name}: the relay is unreachable; try again when connected")
}

/// Notice after verifying.
pub fn verified(name: &str) -> String {
    format!("{name} marked verified")
}

/// Notice after trusting a new key.
pub fn trusted(name: &str) -> String {
    format!("accepted {name}'s new identity key; compare safety numbers with /verify {name}")
}

/// Notice when a contact's key changed while receiving.
pub fn key_changed_notice(name: &str) -> String {
    format!("{name}'s identity key has CHANGED")
}

/// Notice for a rejected envelope.
pub fn rejected(contact: Option<&str>, reason: &str) -> String {
    match contact {
        Some(c) => format!("rejected a message from {c}: {reason}"),
        None => format!("rejected a message: {reason}"),
    }
}

/// Notice for a send that failed.
pub fn send_failed(name: &str, error: &str) -> String {
    format!("not sent to {name}: {error}")
}

/// Notice for an unknown slash command.
pub fn unknown_command(command: &str) -> String {
    format!("unknown command {command}; /help lists the commands")
}

/// Usage notice for a slash command.
pub fn usage(usage: &str) -> String {
    format!("usage: {usage}")
}

/// Notice when there is no contact to act on.
pub const NO_CONTACT_SELECTED: &str = "no contact selected; /add NAME first";

/// System line: a group member's key is not the one we trust for that name.
pub fn group_member_key_changed(member: &str) -> String {
    format!("WARNING: {member}'s key in this group is NOT the one you trust for {member} (KEY CHANGED); /members, /verify {member}")
}

/// Notice when `hush chat '#NAME'` names no group.
pub fn no_such_group(name: &str) -> String {
    format!("no group {name}; `hush group list` lists them")
}

/// Notice when sending to a group we are no longer in.
pub fn group_gone(name: &str) -> String {
    format!("cannot send: you are no longer a member of #{name}")
}

/// Conversation title of a group.
pub fn group_title(name: &str, members: usize, key_changed: bool) -> String {
    let warning = if key_changed {
        " · KEY CHANGED (/members)"
    } else {
        ""
    };
    format!(" #{name} · {members} members{warning} · /members ")
}

/// Conversation title of a group we are no longer in.
pub fn group_title_gone(name: &str, why: &str) -> String {
    format!(" #{name} · no longer a member ({why}) ")
}

/// Members popup body once we are no longer a member.
pub fn group_gone_reason(why: &str) -> String {
    format!("You are no longer a member ({why}).")
}

/// Title of the members popup.
pub fn members_title(name: &str) -> String {
    format!(" Members of #{name} ")
}

/// Last line of the members popup: what two members compare to know they see the same group.
pub fn epoch_line(epoch: u64, authenticator: &str) -> String {
    let short: String = authenticator.chars().take(16).collect();
    format!("epoch {epoch} · authenticator {short}… (equal for members who see the same group)")
}
