//! The `group.*` methods of `hush rpc`: the same operations as `hush group …`, with the same
//! JSON shapes (`group list --json`). Events an operation meets on its way (commits of
//! others, refusals) are held as notifications and written after the response.

use serde::Deserialize;
use serde_json::Value;

use super::{params, Held, Rpc, RpcError};
use crate::cli_group::group_json;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MembersParams {
    name: String,
    #[serde(default)]
    members: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NameParams {
    name: String,
}

/// A group name as given (`team` or `#team`) without its `#`.
fn bare(name: &str) -> &str {
    name.strip_prefix('#').unwrap_or(name)
}

impl Rpc<'_> {
    /// One `group.*` method (the names are matched in `call`).
    pub(super) async fn group_call(
        &mut self,
        method: &str,
        raw: Option<Value>,
    ) -> Result<Value, RpcError> {
        match method {
            "group.create" => {
                let p: MembersParams = params(raw)?;
                let events = self.client.group_create(&p.name, &p.members).await?;
                self.hold_all(&events);
                self.group_value(bare(&p.name))
            }
            "group.add" | "group.remove" => {
                let p: MembersParams = params(raw)?;
                if p.members.is_empty() {
                    return Err(RpcError::new(
                        super::INVALID_PARAMS,
                        "invalid params: members must name at least one member",
                    ));
                }
                let events = if method == "group.add" {
                    self.client.group_add(&p.name, &p.members).await?
                } else {
                    self.client.group_remove(&p.name, &p.members).await?
                };
                self.hold_all(&events);
                self.group_value(bare(&p.name))
            }
            "group.leave" => {
                let p: NameParams = params(raw)?;
                self.client.group_leave(&p.name).await?;
                self.group_value(bare(&p.name))
            }
            "group.list" => {
                let super::NoParams {} = params(raw)?;
                let groups = self.client.groups()?;
                Ok(Value::Array(groups.iter().map(group_json).collect()))
            }
            "group.members" => {
                let p: NameParams = params(raw)?;
                self.group_value(bare(&p.name))
            }
            _ => Err(RpcError::new(
                super::METHOD_NOT_FOUND,
                format!("method not found: {method:?}"),
            )),
        }
    }

    fn group_value(&mut self, name: &str) -> Result<Value, RpcError> {
        Ok(group_json(&self.client.group_info(name)?))
    }

    fn hold_all(&mut self, events: &[hush_client::Event]) {
        for event in events {
            self.hold(Held::event(event));
        }
    }
}

/// `history` of `#NAME`: a group's conversation.
pub(super) fn is_group(name: &str) -> bool {
    name.starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn group_params_are_strict() {
        assert!(params::<MembersParams>(Some(json!({"name": "team"}))).is_ok());
        assert!(params::<MembersParams>(Some(json!({"name": "t", "member": ["bob"]}))).is_err());
        assert!(params::<NameParams>(Some(json!({"name": "t", "members": []}))).is_err());
        assert_eq!(bare("#team"), "team");
        assert_eq!(bare("team"), "team");
    }
}
