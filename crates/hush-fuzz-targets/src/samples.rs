//! Valid encodings for every target, made deterministically from the fixture: the smoke test
//! runs and mutates them, and `tests/smoke.rs::write_seeds` (ignored) writes them to `seeds/`
//! to start a cargo-fuzz corpus.

use hush_proto::message::ContentType;
use hush_proto::relay::{
    Delivery, ErrorCode, GroupCommit, GroupCommits, GroupId, LoggedCommit, RelayError, Reply,
    Request, ServerMessage,
};
use hush_proto::{Envelope, MessageContent, OneTimePrekey, PrekeyBundle};

use crate::fixture;

fn content(body: &[u8], content_type: ContentType) -> Vec<u8> {
    MessageContent {
        id: [7; 16],
        sent_at_ms: 1_700_000_000_123,
        content_type,
        body: body.to_vec(),
    }
    .to_padded_bytes()
    .unwrap()
    .to_vec()
}

fn frames(control: [u8; 2], payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = control.to_vec();
    for p in payloads {
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// Valid inputs for target `target` (empty for an unknown name).
pub fn for_target(target: &str) -> Vec<Vec<u8>> {
    let fx = fixture::get();
    let bundle = fx.bob_bundle.clone();
    let identity = *bundle.identity_key.as_bytes();
    match target {
        // The MLS payloads of valid group envelopes (the target frames them under each kind).
        "group_message" => crate::group::fixture()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .samples
            .iter()
            .map(|env| env.get(2..).unwrap_or_default().to_vec())
            .collect(),
        "envelope" => {
            let mut out = fx.delivered.clone();
            out.extend(fx.v2.first_envelopes.iter().cloned());
            out.push(fx.v2.reply.clone());
            out
        }
        "bundle" => {
            let mut without = bundle.clone();
            without.one_time_prekey = None;
            let mut out = vec![bundle.to_bytes(), without.to_bytes()];
            out.extend(fx.v2.bundles.iter().map(PrekeyBundle::to_bytes));
            out
        }
        "relay_request" => {
            let opk: Vec<OneTimePrekey> = bundle.one_time_prekey.into_iter().collect();
            let requests = [
                Request::Hello {
                    identity_key: bundle.identity_key,
                    signature: [3; 64],
                },
                Request::Register {
                    name: "bob".into(),
                    signature: [4; 64],
                },
                Request::PublishPrekeys {
                    signed_prekey: bundle.signed_prekey,
                    one_time: opk,
                },
                Request::FetchBundle {
                    name: "alice".into(),
                },
                Request::Send {
                    recipient: identity,
                    envelope: fx.delivered[1].clone(),
                },
                Request::Subscribe,
                Request::Ack { ids: vec![1, 2, 3] },
                Request::Ping,
                Request::WhoIs { identity },
                Request::PublishPqPrekeys {
                    last_resort: fx.v2.bob_prekeys.current_pq_last_resort(),
                    one_time: fx.v2.pq_one_time[..1].to_vec(),
                },
                Request::PublishPqPrekeys {
                    last_resort: None,
                    one_time: fx.v2.pq_one_time.clone(),
                },
                Request::PublishPqPrekeys {
                    last_resort: None,
                    one_time: Vec::new(),
                },
            ];
            let requests = requests.into_iter().chain(group_requests(identity));
            requests
                .enumerate()
                .map(|(i, r)| r.encode(i as u64 + 1))
                .collect()
        }
        "server_message" => {
            let replies = [
                Reply::Welcome {
                    name: Some("bob".into()),
                },
                Reply::Welcome { name: None },
                Reply::PrekeysStored {
                    one_time_remaining: 99,
                },
                Reply::Bundle(bundle),
                Reply::Stored { id: 42 },
                Reply::Acked { removed: 3 },
                Reply::Name {
                    name: "alice".into(),
                },
                Reply::Bundle(fx.v2.bundles[1].clone()),
                Reply::PqPrekeysStored {
                    one_time_remaining: 17,
                },
            ];
            let mut out: Vec<Vec<u8>> = replies
                .into_iter()
                .chain(group_replies(identity))
                .enumerate()
                .map(|(i, reply)| {
                    ServerMessage::Response {
                        request_id: i as u64,
                        result: Ok(reply),
                    }
                    .encode()
                })
                .collect();
            out.push(
                ServerMessage::Response {
                    request_id: 9,
                    result: Err(RelayError {
                        code: ErrorCode::UnknownUser,
                        message: "no such user".into(),
                    }),
                }
                .encode(),
            );
            for code in [
                ErrorCode::StaleEpoch,
                ErrorCode::NotGroupMember,
                ErrorCode::UnknownGroup,
                ErrorCode::GroupFull,
            ] {
                out.push(
                    ServerMessage::Response {
                        request_id: 10,
                        result: Err(RelayError {
                            code,
                            message: code.label().into(),
                        }),
                    }
                    .encode(),
                );
            }
            out.push(
                ServerMessage::Deliver(Delivery {
                    id: 5,
                    sender: identity,
                    received_at_ms: 1_700_000_000_000,
                    envelope: fx.delivered[2].clone(),
                })
                .encode(),
            );
            out
        }
        "message_content" => vec![
            content(b"hello", ContentType::TEXT),
            content(&[0xab; 16], ContentType::DELIVERY_RECEIPT),
            content(&[b'x'; 300], ContentType(9)),
        ],
        "ratchet_header" => fx
            .delivered
            .iter()
            .map(|e| {
                Envelope::from_bytes(e)
                    .unwrap()
                    .ratchet_message()
                    .header
                    .to_bytes()
                    .to_vec()
            })
            .collect(),
        "session_pickle" => vec![
            serde_json::to_vec(&fx.pickles[0]).unwrap(),
            serde_json::to_vec(&fx.pickles[1]).unwrap(),
            serde_json::to_vec(&fx.bob_identity.pickle()).unwrap(),
            serde_json::to_vec(&fx.bob_prekeys.pickle()).unwrap(),
            serde_json::to_vec(&fx.v2.pickles[0]).unwrap(),
            serde_json::to_vec(&fx.v2.pickles[1]).unwrap(),
            serde_json::to_vec(&fx.v2.bob_prekeys.pickle()).unwrap(),
        ],
        "frame_reader" => vec![
            frames([0, 0], &[b"", b"a", &[9; 100]]),
            frames([3, 0], &[b"hello", b"world"]),
            frames([1, 200], &[&[1; 10], &[2; 900]]),
            frames([7, 0], &[&fx.delivered[0]]),
        ],
        "ratchet_decrypt" => {
            let mut out = fx.delivered.clone();
            // A hush-v2 prekey envelope and reply: foreign to the fixed pair, so refused.
            out.extend(fx.v2.first_envelopes.iter().cloned());
            out.push(fx.v2.reply.clone());
            // selector ‖ PN ‖ N ‖ ciphertext, for each (party, known key) pair.
            for selector in 0u8..8 {
                let mut input = vec![selector];
                input.extend_from_slice(&0u32.to_be_bytes());
                input.extend_from_slice(&u32::from(selector % 3).to_be_bytes());
                input.extend_from_slice(&[0x5a; 48]);
                out.push(input);
            }
            out
        }
        _ => Vec::new(),
    }
}

fn group_id() -> GroupId {
    GroupId::new(vec![0x61; 16]).unwrap()
}

/// One of each group request (types 11-16), with the optional parts both present and absent.
fn group_requests(member: [u8; 32]) -> Vec<Request> {
    vec![
        Request::PublishKeyPackages {
            last_resort: Some(vec![0x4b; 300]),
            one_time: vec![vec![1; 290], vec![2; 310]],
        },
        Request::PublishKeyPackages {
            last_resort: None,
            one_time: vec![vec![3; 5]],
        },
        Request::FetchKeyPackage {
            name: "carol".into(),
        },
        Request::GroupCommit(GroupCommit {
            group_id: group_id(),
            epoch: 0,
            added: vec![member, [9; 32]],
            removed: vec![],
            commit: vec![1, 4, 0xC0, 0x33],
            welcome: Some(vec![1, 5, 0x77, 0x88]),
        }),
        Request::GroupCommit(GroupCommit {
            group_id: GroupId::new(vec![1]).unwrap(),
            epoch: 41,
            added: vec![],
            removed: vec![member],
            commit: vec![1, 4, 1],
            welcome: None,
        }),
        Request::GroupSend {
            group_id: group_id(),
            envelope: vec![1, 3, 0xAA, 0xBB],
        },
        Request::GroupSync {
            group_id: group_id(),
            after_epoch: 3,
        },
        Request::GroupLeave {
            group_id: group_id(),
        },
    ]
}

/// One of each group reply (types 11-15).
fn group_replies(sender: [u8; 32]) -> Vec<Reply> {
    vec![
        Reply::KeyPackagesStored {
            one_time_remaining: 24,
        },
        Reply::KeyPackage {
            identity: sender,
            key_package: vec![0x4b; 300],
        },
        Reply::CommitAccepted { epoch: 8 },
        Reply::GroupCommits(GroupCommits {
            current_epoch: 9,
            commits: vec![
                LoggedCommit {
                    epoch: 7,
                    sender,
                    commit: vec![1, 4, 7],
                },
                LoggedCommit {
                    epoch: 8,
                    sender: [2; 32],
                    commit: vec![1, 4, 8, 8],
                },
            ],
        }),
        Reply::GroupCommits(GroupCommits {
            current_epoch: 0,
            commits: vec![],
        }),
        Reply::LeftGroup,
    ]
}
