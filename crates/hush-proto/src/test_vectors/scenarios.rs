//! The scripted conversations and the list of files generated from them.

use super::format::VectorFile;
use super::generate::{generate, PqChoice, Setup, Step, Tamper};
use crate::ratchet::RatchetLimits;
use Step::*;

const A: bool = true;
const B: bool = false;

/// A long conversation with default limits, covering every case the format lists except the
/// skip limits (see [`skip_limits_steps`]).
fn conversation_steps() -> Vec<Step> {
    let mut s = vec![
        Send(A, "a0", "Hi Bob, it's Alice."),
        Send(A, "a1", "Are you there?"),
        Send(A, "a2", "Third message before any reply."),
        Tampered(
            B,
            "a0",
            Tamper::NonceBit,
            "tampered initial message (nonce bit flipped)",
        ),
        Recv(B, "a0", true, "initial message creates Bob's session"),
        Recv(B, "a2", true, "a1 skipped and stored"),
        Recv(B, "a1", true, "out of order, from a stored key"),
        Send(B, "b0", "Yes, hello!"),
        Send(B, "b1", "This one arrives late."),
        Send(B, "b2", ""),
        Recv(A, "b0", true, "DH ratchet step on Alice's side"),
        Recv(A, "b2", true, "b1 skipped; empty body"),
        Send(A, "a3", "New chain from Alice."),
        Send(A, "a4", "Still the same chain."),
        Recv(B, "a4", true, "DH step; a3 skipped"),
        Recv(
            B,
            "a1",
            false,
            "replay of a message from the previous chain",
        ),
        Recv(B, "a4", false, "replay in the current chain"),
        Tampered(B, "a3", Tamper::TagBit, "tag bit flipped"),
        Tampered(B, "a3", Tamper::CiphertextBit, "ciphertext bit flipped"),
        Tampered(
            B,
            "a3",
            Tamper::Truncate(39),
            "truncated to 39 bytes (< nonce || tag)",
        ),
        Tampered(
            B,
            "a3",
            Tamper::HeaderCounter(1),
            "header n changed 0->1 (replay of a4's slot)",
        ),
        Tampered(B, "a3", Tamper::HeaderCounter(7), "header n changed 0->7"),
        Tampered(B, "a3", Tamper::HeaderPn(9), "header pn changed"),
        Tampered(B, "a3", Tamper::HeaderKey, "header ratchet key replaced"),
        Recv(B, "a3", true, "genuine a3 after the forgeries"),
        Send(B, "b3", "Bob again, new chain."),
        Recv(A, "b3", true, "DH step"),
        Recv(
            A,
            "b1",
            true,
            "late message from Bob's first chain, key stored from PN",
        ),
        Recv(A, "b1", false, "replay of the late message"),
    ];
    // Several more DH round trips with a few messages each way.
    let ids_a = ["a5", "a6", "a7", "a8", "a9", "a10", "a11", "a12"];
    let ids_b = ["b4", "b5", "b6", "b7", "b8", "b9", "b10", "b11"];
    for round in 0..4 {
        let (x, y) = (ids_a[2 * round], ids_a[2 * round + 1]);
        s.push(Send(A, x, "round trip message"));
        s.push(Send(A, y, "and another one"));
        s.push(Recv(B, y, true, ""));
        s.push(Recv(B, x, true, ""));
        let (x, y) = (ids_b[2 * round], ids_b[2 * round + 1]);
        s.push(Send(B, x, "reply"));
        s.push(Send(B, y, "reply two"));
        s.push(Recv(A, x, true, ""));
        s.push(Recv(A, y, true, ""));
    }
    s
}

/// Small limits (max_skip 5, 8 stored) to show both skip bounds and eviction in a short file.
fn skip_limits_steps() -> Vec<Step> {
    let mut s = Vec::new();
    let first = ["a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7"];
    for id in first {
        s.push(Send(A, id, "x"));
    }
    s.extend([
        Recv(B, "a0", true, "initial message"),
        Recv(B, "a7", false, "needs 6 skipped keys > max_skip = 5"),
        Recv(B, "a6", true, "exactly max_skip = 5 keys skipped (a1..a5)"),
        Recv(B, "a7", true, "next in chain"),
        Send(B, "b0", "y"),
        Recv(A, "b0", true, "DH step"),
    ]);
    let second = ["a8", "a9", "a10", "a11", "a12", "a13", "a14"];
    for id in second {
        s.push(Send(A, id, "z"));
    }
    s.extend([
        Recv(
            B,
            "a14",
            false,
            "new chain: needs 6 skipped keys > max_skip",
        ),
        Recv(
            B,
            "a13",
            true,
            "new chain: 5 skipped (a8..a12); 10 stored > 8, a1 and a2 evicted",
        ),
        Recv(B, "a1", false, "key evicted (oldest first)"),
        Recv(B, "a3", true, "stored key survived eviction"),
        Recv(B, "a14", true, "next in chain"),
        Send(B, "b1", "w"),
        Recv(A, "b1", true, "DH step"),
    ]);
    // Alice's new chain: PN will be 7; Bob received none of it except the one below.
    let third = ["a15", "a16", "a17", "a18", "a19", "a20", "a21"];
    for id in third {
        s.push(Send(A, id, "v"));
    }
    s.extend([
        Recv(
            B,
            "a15",
            true,
            "DH step; PN 7 = the previous chain, all of it already received",
        ),
        Send(B, "b2", "u"),
        Recv(A, "b2", true, "DH step"),
        Send(A, "a22", "t"),
        Recv(
            B,
            "a22",
            false,
            "PN = 7 but Bob has 1 of them: 6 to skip > max_skip",
        ),
        Recv(B, "a16", true, "previous chain still works"),
        Recv(B, "a22", true, "now PN needs only 5 skipped keys"),
    ]);
    s
}

/// Every file in `test-vectors/` that we generate, by name. The `hush-v1` files keep the
/// seeds, draws and scripts they were first committed with (a test requires them unchanged).
pub(super) fn vector_files() -> Vec<(&'static str, VectorFile)> {
    let small = RatchetLimits {
        max_skip: 5,
        max_stored_skipped: 8,
    };
    let default = RatchetLimits::default();
    let setup = |seed, with_opk, pq, limits| Setup {
        seed,
        with_opk,
        pq,
        limits,
    };
    vec![
        (
            "hush-v1-conversation.json",
            generate(
                setup(1, true, PqChoice::None, default),
                &conversation_steps(),
            ),
        ),
        (
            "hush-v1-no-opk-skip-limits.json",
            generate(setup(2, false, PqChoice::None, small), &skip_limits_steps()),
        ),
        (
            "hush-v2-one-time-pq-conversation.json",
            generate(
                setup(3, true, PqChoice::OneTime, default),
                &conversation_steps(),
            ),
        ),
        (
            "hush-v2-last-resort-pq-no-opk-skip-limits.json",
            generate(
                setup(4, false, PqChoice::LastResort, small),
                &skip_limits_steps(),
            ),
        ),
    ]
}
