//! The `group.*` methods of the JSON-RPC API (dispatched from `call` in [`super::dispatch`],
//! whose match arms tests/rpc_doc.rs reads): the operations of `hush group …`, with its JSON
//! shapes. Events an operation meets on its way (commits of others, refusals) follow the
//! response as notifications.

use serde::Deserialize;
use serde_json::Value;

use super::dispatch::{Dispatcher, Held, NoParams};
use super::protocol::{params, RpcError, INVALID_PARAMS, METHOD_NOT_FOUND};
use crate::cli_group::group_json;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupParams {
    group: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupMembersParams {
    group: String,
    #[serde(default)]
    members: Vec<String>,
}

impl Dispatcher<'_> {
    /// One `group.*` method.
    pub(super) async fn group_call(
        &mut self,
        method: &str,
        raw: Option<Value>,
    ) -> Result<Value, RpcError> {
        match method {
            "group.create" | "group.add" | "group.remove" => {
                let p: GroupMembersParams = params(raw)?;
                if p.members.is_empty() && method != "group.create" {
                    return Err(RpcError::new(
                        INVALID_PARAMS,
                        "invalid params: members must name at least one member",
                    ));
                }
                let events = match method {
                    "group.create" => self.client.group_create(&p.group, &p.members).await?,
                    "group.add" => self.client.group_add(&p.group, &p.members).await?,
                    _ => self.client.group_remove(&p.group, &p.members).await?,
                };
                for event in &events {
                    self.hold(Held::event(event));
                }
                let name = p.group.trim_start_matches('#');
                Ok(group_json(&self.client.group_info(name)?))
            }
            "group.leave" => {
                let p: GroupParams = params(raw)?;
                self.client.group_leave(&p.group).await?;
                Ok(group_json(&self.client.group_info(&p.group)?))
            }
            "group.list" => {
                let NoParams {} = params(raw)?;
                let groups = self.client.groups()?;
                Ok(Value::Array(groups.iter().map(group_json).collect()))
            }
            "group.members" => {
                let p: GroupParams = params(raw)?;
                Ok(group_json(&self.client.group_info(&p.group)?))
            }
            _ => Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("method not found: {method:?}"),
            )),
        }
    }
}
