//! The JSON-RPC 2.0 envelope, shared by every transport (stdio lines, WebSocket frames):
//! parsing one request, named params, error objects and responses. Nothing here knows where a
//! request came from or where its answer goes.

use hush_client::ClientError;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

pub(crate) const PARSE_ERROR: i64 = -32700;
pub(crate) const INVALID_REQUEST: i64 = -32600;
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
pub(crate) const INVALID_PARAMS: i64 = -32602;
pub(crate) const APPLICATION_ERROR: i64 = -32000;

/// A JSON-RPC error object.
#[derive(Debug)]
pub(crate) struct RpcError {
    pub(crate) code: i64,
    pub(crate) message: String,
    pub(crate) data: Option<Value>,
}

impl RpcError {
    pub(crate) fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }
}

impl From<ClientError> for RpcError {
    fn from(e: ClientError) -> Self {
        let kind = match &e {
            ClientError::Store(_) => "store",
            ClientError::Network(_) => "network",
            ClientError::RelayKeyChanged => "relay_key_changed",
            ClientError::Relay(_) => "relay",
            ClientError::UnknownUser(_) => "unknown_user",
            ClientError::KeyChanged(_) => "key_changed",
            ClientError::Downgrade { .. } => "downgrade",
            ClientError::NoSuchContact(_) => "no_such_contact",
            ClientError::Session { .. } => "session",
            ClientError::Encrypt(_) => "encrypt",
            ClientError::Invalid(_) => "invalid",
            ClientError::Group(_) => "group",
            _ => "other",
        };
        Self {
            code: APPLICATION_ERROR,
            message: e.to_string(),
            data: Some(json!({ "kind": kind })),
        }
    }
}

/// A well-formed request.
#[derive(Debug)]
pub(crate) struct Request {
    /// `None` for a notification (no response).
    pub(crate) id: Option<Value>,
    pub(crate) method: String,
    pub(crate) params: Option<Value>,
}

/// One frame (a stdio line or a WebSocket text message) as a request. `Ok(None)` for a blank
/// frame, which is ignored; `Err` is the error response to send back.
pub(crate) fn parse_frame(frame: &[u8]) -> Result<Option<Request>, Value> {
    if frame.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(frame).map_err(|e| {
        let error = RpcError::new(PARSE_ERROR, format!("parse error: {e}"));
        response(Value::Null, Err(error))
    })?;
    parse_request(value)
        .map(Some)
        .map_err(|(id, message)| response(id, Err(RpcError::new(INVALID_REQUEST, message))))
}

/// Check the envelope of a request; on failure, the id to answer with and why.
pub(crate) fn parse_request(value: Value) -> Result<Request, (Value, String)> {
    let mut obj = match value {
        Value::Object(obj) => obj,
        Value::Array(_) => {
            return Err((
                Value::Null,
                "batch requests are not supported; send one object per line".into(),
            ))
        }
        _ => return Err((Value::Null, "a request must be a JSON object".into())),
    };
    let id = obj.remove("id");
    if !matches!(
        id,
        None | Some(Value::Null | Value::String(_) | Value::Number(_))
    ) {
        return Err((Value::Null, "id must be a string, a number or null".into()));
    }
    let reply_id = id.clone().unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((reply_id, "jsonrpc must be \"2.0\"".into()));
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        Some(_) => return Err((reply_id, "method must be a string".into())),
        None => return Err((reply_id, "missing method".into())),
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => None,
        Some(p @ (Value::Object(_) | Value::Array(_))) => Some(p),
        Some(_) => return Err((reply_id, "params must be an object".into())),
    };
    Ok(Request { id, method, params })
}

/// Named params into `T`; absent params are an empty object.
pub(crate) fn params<T: DeserializeOwned>(params: Option<Value>) -> Result<T, RpcError> {
    let value = match params {
        None => Value::Object(serde_json::Map::new()),
        Some(Value::Array(_)) => {
            return Err(RpcError::new(
                INVALID_PARAMS,
                "params must be an object (by name), not an array",
            ))
        }
        Some(v) => v,
    };
    serde_json::from_value(value)
        .map_err(|e| RpcError::new(INVALID_PARAMS, format!("invalid params: {e}")))
}

/// The response object for `id`.
pub(crate) fn response(id: Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(e) => {
            let mut error = json!({ "code": e.code, "message": e.message });
            if let (Some(data), Some(obj)) = (e.data, error.as_object_mut()) {
                obj.insert("data".into(), data);
            }
            json!({ "jsonrpc": "2.0", "id": id, "error": error })
        }
    }
}

/// The `-32600` answer to a frame over the size limit (already discarded, so no id).
pub(crate) fn too_long(len: usize, max: usize) -> Value {
    let error = RpcError::new(
        INVALID_REQUEST,
        format!("request of {len} bytes exceeds the limit of {max}"),
    );
    response(Value::Null, Err(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_envelope_is_checked() {
        let ok = parse_request(json!({"jsonrpc": "2.0", "id": 7, "method": "whoami"})).unwrap();
        assert_eq!(ok.id, Some(json!(7)));
        let note = parse_request(json!({"jsonrpc": "2.0", "method": "whoami"})).unwrap();
        assert!(note.id.is_none());
        for bad in [
            json!([]),
            json!(3),
            json!({"jsonrpc": "1.0", "id": 1, "method": "x"}),
            json!({"jsonrpc": "2.0", "id": 1}),
            json!({"jsonrpc": "2.0", "id": 1, "method": 5}),
            json!({"jsonrpc": "2.0", "id": {}, "method": "x"}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "x", "params": 3}),
        ] {
            assert!(parse_request(bad.clone()).is_err(), "{bad}");
        }
        let (id, _) = parse_request(json!({"jsonrpc": "1.0", "id": "a", "method": "x"}))
            .err()
            .unwrap();
        assert_eq!(id, json!("a"));
    }

    #[test]
    fn frames_parse_or_answer_with_an_error() {
        assert!(parse_frame(b"  \t").unwrap().is_none());
        let err = parse_frame(b"not json").unwrap_err();
        assert_eq!(err["error"]["code"], PARSE_ERROR);
        assert_eq!(err["id"], Value::Null);
        let err = parse_frame(br#"{"jsonrpc":"1.0","id":4,"method":"x"}"#).unwrap_err();
        assert_eq!(err["error"]["code"], INVALID_REQUEST);
        assert_eq!(err["id"], 4);
        let ok = parse_frame(br#"{"jsonrpc":"2.0","id":4,"method":"x"}"#).unwrap();
        assert_eq!(ok.unwrap().method, "x");
    }
}
