use super::*;
use crate::IdentityKeyPair;
use proptest::prelude::*;

fn sample_pq(id: u32) -> PqPrekey {
    PqPrekey {
        id,
        encapsulation_key: Box::new([id as u8; crate::pq::KEM_ENCAPSULATION_KEY_LEN]),
        signature: [9; 64],
    }
}

fn samples() -> Vec<Request> {
    let id = IdentityKeyPair::from_seed(&[5; 32]);
    let spk = SignedPrekey {
        id: 3,
        created_at: 99,
        public_key: X25519PublicKey::from_bytes([7; 32]),
        signature: [8; 64],
    };
    vec![
        Request::Hello {
            identity_key: id.public_key(),
            signature: [1; 64],
        },
        Request::Register {
            name: "alice".into(),
            signature: [2; 64],
        },
        Request::PublishPrekeys {
            signed_prekey: spk,
            one_time: vec![OneTimePrekey {
                id: 4,
                public_key: X25519PublicKey::from_bytes([9; 32]),
            }],
        },
        Request::PublishPqPrekeys {
            last_resort: Some(sample_pq(0x8000_0002)),
            one_time: vec![sample_pq(5), sample_pq(6)],
        },
        Request::PublishPqPrekeys {
            last_resort: None,
            one_time: vec![],
        },
        Request::FetchBundle { name: "bob".into() },
        Request::Send {
            recipient: [3; 32],
            envelope: vec![1, 2, 3],
        },
        Request::Subscribe,
        Request::Ack {
            ids: vec![1, 2, 99],
        },
        Request::Ping,
        Request::WhoIs { identity: [4; 32] },
        Request::PublishKeyPackages {
            last_resort: Some(vec![7; 300]),
            one_time: vec![vec![8; 290], vec![9; 1]],
        },
        Request::PublishKeyPackages {
            last_resort: None,
            one_time: vec![],
        },
        Request::FetchKeyPackage {
            name: "carol".into(),
        },
        Request::GroupCommit(GroupCommit {
            group_id: gid(),
            epoch: 7,
            added: vec![[1; 32], [2; 32]],
            removed: vec![[3; 32]],
            commit: vec![1, 4, 5, 6],
            welcome: Some(vec![1, 5, 9, 9]),
        }),
        Request::GroupCommit(GroupCommit {
            group_id: gid(),
            epoch: 0,
            added: vec![],
            removed: vec![],
            commit: vec![1, 4, 0],
            welcome: None,
        }),
        Request::GroupSend {
            group_id: gid(),
            envelope: vec![1, 3, 7],
        },
        Request::GroupSync {
            group_id: gid(),
            after_epoch: 3,
        },
        Request::GroupLeave { group_id: gid() },
    ]
}

fn gid() -> GroupId {
    GroupId::new(vec![0xab; 16]).unwrap()
}

#[test]
fn group_ids_are_1_to_32_bytes_and_oversized_group_fields_are_refused() {
    assert!(GroupId::new(vec![]).is_err());
    assert!(GroupId::new(vec![1; 33]).is_err());
    assert!(GroupId::new(vec![1; 32]).is_ok());
    // A KeyPackage over the limit, or too many, is refused by the decoder.
    let too_big = Request::PublishKeyPackages {
        last_resort: Some(vec![1; group::MAX_KEY_PACKAGE_LEN + 1]),
        one_time: vec![],
    };
    assert!(Request::decode(&too_big.encode(1)).is_err());
    let mut bytes = Request::PublishKeyPackages {
        last_resort: None,
        one_time: vec![],
    }
    .encode(1);
    let n = bytes.len();
    bytes[n - 2..]
        .copy_from_slice(&((group::MAX_KEY_PACKAGES_PER_PUBLISH + 1) as u16).to_be_bytes());
    assert!(Request::decode(&bytes).is_err());
}

#[test]
fn requests_round_trip_and_truncations_fail() {
    for (i, req) in samples().into_iter().enumerate() {
        let bytes = req.encode(i as u64 + 10);
        assert_eq!(
            Request::decode(&bytes).unwrap(),
            (i as u64 + 10, req.clone())
        );
        // An envelope or Welcome that runs to the end may be cut (a shorter one decodes): only
        // the fixed part before it must be complete.
        let fixed = match &req {
            Request::Send { .. } => bytes.len() - 3,
            Request::GroupSend { envelope, .. } => bytes.len() - envelope.len(),
            Request::GroupCommit(c) => bytes.len() - c.welcome.as_ref().map_or(0, Vec::len),
            _ => bytes.len(),
        };
        for cut in 0..fixed {
            assert!(Request::decode(&bytes[..cut]).is_err(), "{req:?} cut {cut}");
        }
    }
}

#[test]
fn server_messages_round_trip() {
    let id = IdentityKeyPair::from_seed(&[5; 32]);
    let bundle = PrekeyBundle {
        identity_key: id.public_key(),
        signed_prekey: SignedPrekey {
            id: 1,
            created_at: 2,
            public_key: X25519PublicKey::from_bytes([3; 32]),
            signature: [4; 64],
        },
        one_time_prekey: None,
        pq_prekey: None,
    };
    let pq_bundle = PrekeyBundle {
        pq_prekey: Some(sample_pq(0x8000_0001)),
        ..bundle.clone()
    };
    let replies = [
        Reply::Welcome { name: None },
        Reply::Welcome {
            name: Some("carol".into()),
        },
        Reply::Registered,
        Reply::PrekeysStored {
            one_time_remaining: 7,
        },
        Reply::PqPrekeysStored {
            one_time_remaining: 3,
        },
        Reply::Bundle(bundle),
        Reply::Bundle(pq_bundle),
        Reply::Stored { id: 5 },
        Reply::Subscribed,
        Reply::Acked { removed: 2 },
        Reply::Pong,
        Reply::Name {
            name: "dave".into(),
        },
        Reply::KeyPackagesStored {
            one_time_remaining: 9,
        },
        Reply::KeyPackage {
            identity: [7; 32],
            key_package: vec![1, 2, 3],
        },
        Reply::CommitAccepted { epoch: 8 },
        Reply::GroupCommits(GroupCommits {
            current_epoch: 9,
            commits: vec![
                LoggedCommit {
                    epoch: 7,
                    sender: [1; 32],
                    commit: vec![1, 4, 1],
                },
                LoggedCommit {
                    epoch: 8,
                    sender: [2; 32],
                    commit: vec![1, 4, 2, 2],
                },
            ],
        }),
        Reply::GroupCommits(GroupCommits {
            current_epoch: 0,
            commits: vec![],
        }),
        Reply::LeftGroup,
    ];
    let mut messages: Vec<ServerMessage> = replies
        .into_iter()
        .map(|r| ServerMessage::Response {
            request_id: 1,
            result: Ok(r),
        })
        .collect();
    messages.push(ServerMessage::Response {
        request_id: 2,
        result: Err(RelayError {
            code: ErrorCode::MailboxFull,
            message: "mailbox of recipient is full".into(),
        }),
    });
    messages.push(ServerMessage::Deliver(Delivery {
        id: 9,
        sender: [6; 32],
        received_at_ms: 12,
        envelope: vec![0xee; 40],
    }));
    for m in messages {
        assert_eq!(ServerMessage::decode(&m.encode()).unwrap(), m);
    }
}

/// The wire values of the error codes, as docs/PROTOCOL.md §11.4 lists them.
#[test]
fn error_codes_have_their_documented_wire_values() {
    let documented = [
        (15, ErrorCode::NotRegistered, "not_registered"),
        (16, ErrorCode::StorageFull, "storage_full"),
        (17, ErrorCode::TooManyConnections, "too_many_connections"),
        (18, ErrorCode::StaleEpoch, "stale_epoch"),
        (19, ErrorCode::NotGroupMember, "not_group_member"),
        (20, ErrorCode::UnknownGroup, "unknown_group"),
        (21, ErrorCode::GroupFull, "group_full"),
    ];
    for (wire, code, label) in documented {
        assert_eq!(code.to_u16(), wire);
        assert_eq!(ErrorCode::from_u16(wire), code);
        assert_eq!(code.label(), label);
    }
    for wire in 1..=21 {
        assert_eq!(ErrorCode::from_u16(wire).to_u16(), wire);
        assert_ne!(ErrorCode::from_u16(wire), ErrorCode::Other(wire));
    }
    assert_eq!(ErrorCode::from_u16(22), ErrorCode::Other(22));
}

#[test]
fn unknown_versions_and_types_are_typed_errors_with_the_request_id() {
    let mut bytes = Request::Ping.encode(77);
    bytes[0] = 9;
    assert!(matches!(
        Request::decode(&bytes),
        Err((
            None,
            DecodeError::UnsupportedVersion {
                got: 9,
                supported: 1,
                ..
            }
        ))
    ));
    let mut bytes = Request::Ping.encode(77);
    bytes[9] = 200;
    assert!(matches!(
        Request::decode(&bytes),
        Err((Some(77), DecodeError::InvalidField { .. }))
    ));
}

#[test]
fn names() {
    assert!(is_valid_name("alice"));
    assert!(is_valid_name("a.b-c_9"));
    assert!(!is_valid_name(""));
    assert!(!is_valid_name("Alice"));
    assert!(!is_valid_name("-x"));
    assert!(!is_valid_name(&"a".repeat(33)));
    assert!(!is_valid_name("al ice"));
}

/// A relay that names an identity `"\x1b[2Kbob"` (or anything else a user could not have
/// registered) is lying; the reply does not decode, so the name never reaches a contact
/// list or a terminal.
#[test]
fn replies_naming_an_unregistrable_name_are_refused() {
    for bad in [
        "\x1b[2Kbob",
        "bob\nmallory",
        "Bob",
        "-x",
        "b\u{202e}ob",
        "a b",
    ] {
        for reply in [
            Reply::Name { name: bad.into() },
            Reply::Welcome {
                name: Some(bad.into()),
            },
        ] {
            let bytes = ServerMessage::Response {
                request_id: 3,
                result: Ok(reply),
            }
            .encode();
            assert!(
                matches!(
                    ServerMessage::decode(&bytes),
                    Err(DecodeError::InvalidName { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }
    let empty = ServerMessage::Response {
        request_id: 3,
        result: Ok(Reply::Name {
            name: String::new(),
        }),
    };
    assert!(ServerMessage::decode(&empty.encode()).is_err());
}

proptest! {
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Request::decode(&bytes);
        let _ = ServerMessage::decode(&bytes);
    }
}
