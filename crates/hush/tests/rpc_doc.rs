//! docs/RPC.md documents exactly the methods `hush rpc` (and `hush web`) dispatches and the
//! notifications it emits: read from the source (the match arms of `call`, the methods in
//! `event_notification` and `status_notification`, all in src/rpc/dispatch.rs), so a method
//! added without documentation fails here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;

fn read(relative: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// The body of the function whose definition line contains `signature`, up to the next `fn`
/// at the same indentation.
fn function_body<'a>(source: &'a str, signature: &str) -> Vec<&'a str> {
    let mut lines = source.lines().skip_while(|l| !l.contains(signature));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("no {signature} in rpc/dispatch.rs"));
    let indent = first.len() - first.trim_start().len();
    let closing = format!("{}}}", " ".repeat(indent));
    lines.take_while(|l| *l != closing).collect()
}

/// The string literals of match arms such as `"send" =>` and `"subscribe" | "receive" =>`.
fn dispatched_methods(rpc: &str) -> BTreeSet<String> {
    let mut methods = BTreeSet::new();
    for line in function_body(rpc, "async fn call(") {
        let Some((pattern, _)) = line.trim().split_once("=>") else {
            continue;
        };
        let alternatives: Vec<&str> = pattern.split('|').map(str::trim).collect();
        if alternatives
            .iter()
            .all(|a| a.len() > 2 && a.starts_with('"') && a.ends_with('"'))
        {
            methods.extend(alternatives.iter().map(|a| a.trim_matches('"').to_owned()));
        }
    }
    methods
}

/// The method names in `event_notification` and `status_notification`: each arm yields
/// `("name", params)`.
fn notification_methods(rpc: &str) -> BTreeSet<String> {
    methods_in(rpc, &["fn event_notification(", "fn status_notification("])
}

/// The `("name", params)` method names in the bodies of the functions `signatures`.
fn methods_in(rpc: &str, signatures: &[&str]) -> BTreeSet<String> {
    let mut methods = BTreeSet::new();
    // rustfmt may break `(\n"name",` over lines: read the body as one line.
    let mut body = Vec::new();
    for signature in signatures {
        body.extend(function_body(rpc, signature));
    }
    let body = body.join(" ");
    let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let body = body.replace("( ", "(");
    let mut rest = body.as_str();
    while let Some(start) = rest.find("(\"") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('"') else { break };
        if after[end..].starts_with("\",") {
            methods.insert(after[..end].to_owned());
        }
        rest = &after[end..];
    }
    methods
}

/// Names in headings of the form `### `name`` under the `## {section}` heading.
fn documented(doc: &str, section: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut inside = false;
    for line in doc.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            inside = title.trim() == section;
        } else if let Some(title) = line.strip_prefix("### ") {
            if inside {
                // `### `subscribe` (alias `receive`)` documents both names.
                for (i, part) in title.split('`').enumerate() {
                    if i % 2 == 1 {
                        names.insert(part.to_owned());
                    }
                }
            }
        }
    }
    names
}

#[test]
fn every_dispatched_method_and_notification_is_documented() {
    let rpc = read("src/rpc/dispatch.rs");
    let doc = read("../../docs/RPC.md");
    let methods = dispatched_methods(&rpc);
    let notifications = notification_methods(&rpc);
    // The parser itself must see what the server has (guards against reading nothing).
    for known in ["send", "subscribe", "receive", "whoami"] {
        assert!(
            methods.contains(known),
            "parser missed {known}: {methods:?}"
        );
    }
    for known in ["message", "delivered", "failed", "status"] {
        assert!(
            notifications.contains(known),
            "parser missed {known}: {notifications:?}"
        );
    }
    assert_eq!(
        documented(&doc, "Methods"),
        methods,
        "docs/RPC.md `## Methods` headings differ from the methods rpc/dispatch.rs dispatches"
    );
    assert_eq!(
        documented(&doc, "Notifications"),
        notifications,
        "docs/RPC.md `## Notifications` headings differ from what rpc/dispatch.rs emits"
    );
    // What only the WebSocket sends (`hello`, the first frame) is documented under its own
    // section, not with the notifications both transports send.
    let web_only = methods_in(&rpc, &["fn hello_notification("]);
    assert!(
        web_only.contains("hello"),
        "parser missed hello: {web_only:?}"
    );
    assert_eq!(
        documented(&doc, "Over a WebSocket (`hush web`)"),
        web_only,
        "docs/RPC.md's WebSocket section headings differ from the notifications only hush web sends"
    );
}

#[test]
fn readme_links_the_rpc_reference() {
    let readme = read("../../README.md");
    assert!(
        readme.contains("docs/RPC.md"),
        "README does not link docs/RPC.md"
    );
}
