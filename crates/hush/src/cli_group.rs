//! `hush group …`: create, add, remove, leave, list, members; and how group events are shown
//! (system lines), shared by `recv`, `send` and `hush rpc`.

use std::process::ExitCode;

use clap::Subcommand;
use hush_client::{Client, ClientError, Event, GroupChange, GroupInfo};
use serde_json::{json, Value};

use crate::output::out;
use crate::sanitize;

/// `hush group` subcommands.
#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Create group NAME (addressed as '#NAME') and add MEMBERs (contacts whose key is not
    /// changed).
    Create {
        /// Group name (1-32 of a-z 0-9 _ - .), local to you.
        name: String,
        /// Contacts to add.
        members: Vec<String>,
    },
    /// Add contacts to group NAME.
    Add {
        /// Group name.
        name: String,
        /// Contacts to add.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Remove members from group NAME (they cannot read what is sent after).
    Remove {
        /// Group name.
        name: String,
        /// Members to remove.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Leave group NAME (another member commits your removal); its history stays.
    Leave {
        /// Group name.
        name: String,
    },
    /// List groups.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Show group NAME's members, each verified / known / KEY CHANGED / not a contact, and
    /// the epoch and epoch authenticator (equal for every member seeing the same group).
    Members {
        /// Group name.
        name: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

/// Run one `hush group` command.
pub async fn run(client: &mut Client, command: GroupCommand) -> Result<ExitCode, String> {
    let err = |e: ClientError| e.to_string();
    match command {
        GroupCommand::Create { name, members } => {
            let events = client.group_create(&name, &members).await.map_err(err)?;
            print_events(&events)?;
            let name = name.trim_start_matches('#');
            if members.is_empty() {
                out!("created #{}", sanitize::line(name))?;
            } else {
                out!(
                    "created #{} with {}",
                    sanitize::line(name),
                    sanitize::line(&members.join(", "))
                )?;
            }
        }
        GroupCommand::Add { name, members } => {
            let events = client.group_add(&name, &members).await.map_err(err)?;
            print_events(&events)?;
            out!(
                "added {} to #{}",
                sanitize::line(&members.join(", ")),
                sanitize::line(name.trim_start_matches('#'))
            )?;
        }
        GroupCommand::Remove { name, members } => {
            let events = client.group_remove(&name, &members).await.map_err(err)?;
            print_events(&events)?;
            out!(
                "removed {} from #{}",
                sanitize::line(&members.join(", ")),
                sanitize::line(name.trim_start_matches('#'))
            )?;
        }
        GroupCommand::Leave { name } => {
            client.group_leave(&name).await.map_err(err)?;
            out!("left #{}", sanitize::line(name.trim_start_matches('#')))?;
        }
        GroupCommand::List { json } => {
            for g in client.groups().map_err(err)? {
                if json {
                    out!("{}", group_json(&g))?;
                } else {
                    let status = match &g.gone {
                        Some(why) => format!("no longer a member ({})", sanitize::line(why)),
                        None => format!("{} members", g.members.len()),
                    };
                    out!(
                        "#{}\t{status}\t{} unread",
                        sanitize::line(&g.name),
                        g.unread
                    )?;
                }
            }
        }
        GroupCommand::Members { name, json } => {
            let g = client.group_info(&name).map_err(err)?;
            if json {
                out!("{}", group_json(&g))?;
            } else {
                match &g.gone {
                    Some(why) => out!(
                        "#{}: you are no longer a member ({})",
                        sanitize::line(&g.name),
                        sanitize::line(why)
                    )?,
                    None => out!(
                        "#{} epoch {} authenticator {}",
                        sanitize::line(&g.name),
                        g.epoch.unwrap_or_default(),
                        g.epoch_authenticator.as_deref().unwrap_or("")
                    )?,
                }
                for m in &g.members {
                    out!(
                        "{}\t{}\t{}",
                        sanitize::line(&m.name),
                        m.state.label(),
                        fingerprint(&m.identity_key)
                    )?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn fingerprint(key_hex: &str) -> String {
    hex::decode(key_hex)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| hush_proto::IdentityPublicKey::from_bytes(&b).ok())
        .map(|k| k.fingerprint().to_string())
        .unwrap_or_else(|| key_hex.to_owned())
}

/// The JSON shape of a group (`group list --json`, `group members --json`, rpc).
pub fn group_json(g: &GroupInfo) -> Value {
    json!({
        "group": g.name,
        "id": g.id,
        "member": g.gone.is_none(),
        "gone": g.gone,
        "unread": g.unread,
        "epoch": g.epoch,
        "epoch_authenticator": g.epoch_authenticator,
        "members": g.members.iter().map(|m| json!({
            "name": m.name,
            "identity_key": m.identity_key,
            "fingerprint": fingerprint(&m.identity_key),
            "state": m.state,
        })).collect::<Vec<_>>(),
    })
}

/// A group change as JSON fields (`recv --json` adds `"event": "group"`).
pub fn change_json(group: &str, change: &GroupChange) -> Value {
    match change {
        GroupChange::Joined { inviter, members } => {
            json!({"group": group, "change": "joined", "by": inviter, "members": members})
        }
        GroupChange::Added { by, members } => {
            json!({"group": group, "change": "added", "by": by, "members": members})
        }
        GroupChange::Removed { by, members } => {
            json!({"group": group, "change": "removed", "by": by, "members": members})
        }
        GroupChange::WeWereRemoved { by } => {
            json!({"group": group, "change": "you_were_removed", "by": by})
        }
        GroupChange::LeaveRequested { member } => {
            json!({"group": group, "change": "leave_requested", "member": member})
        }
        GroupChange::MemberKeyChanged { member } => {
            json!({"group": group, "change": "key_changed", "member": member})
        }
        GroupChange::NotAContact {
            member,
            fingerprint,
        } => {
            json!({"group": group, "change": "not_a_contact", "member": member, "fingerprint": fingerprint})
        }
        _ => json!({"group": group, "change": "other"}),
    }
}

/// A group change as a system line.
pub fn change_text(group: &str, change: &GroupChange) -> String {
    let list = |names: &[String]| sanitize::line(&names.join(", "));
    let line = match change {
        GroupChange::Joined { inviter, members } => format!(
            "{} added you; members: {}",
            sanitize::line(inviter),
            list(members)
        ),
        GroupChange::Added { by, members } => {
            format!("{} added {}", sanitize::line(by), list(members))
        }
        GroupChange::Removed { by, members } => {
            format!("{} removed {}", sanitize::line(by), list(members))
        }
        GroupChange::WeWereRemoved { by } => format!(
            "{} removed you: you can no longer read or send in this group",
            sanitize::line(by)
        ),
        GroupChange::LeaveRequested { member } => format!("{} is leaving", sanitize::line(member)),
        GroupChange::MemberKeyChanged { member } => {
            let m = sanitize::line(member);
            format!("WARNING: {m}'s key in this group is NOT the one you trust for {m} (KEY CHANGED); check with `hush group members` and `hush verify {m}`")
        }
        GroupChange::NotAContact {
            member,
            fingerprint,
        } => format!(
            "{} is not one of your contacts (fingerprint {})",
            sanitize::line(member),
            sanitize::line(fingerprint)
        ),
        _ => "changed".to_owned(),
    };
    format!("#{} * {line}", sanitize::line(group))
}

/// Show what a group operation met on its way (commits of others, refusals).
fn print_events(events: &[Event]) -> Result<(), String> {
    for event in events {
        crate::cli::print_event(event, false)?;
    }
    Ok(())
}
