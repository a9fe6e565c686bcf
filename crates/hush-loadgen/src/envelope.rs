//! The load generator's envelopes (the relay only checks the framing): `0x01 ‖ sender u32be ‖
//! seq u64be ‖ send time u64be (ns since the run's epoch) ‖ zero padding` up to the message
//! size; group messages carry the group-envelope kind between version and sender
//! (`0x01 ‖ 0x03 ‖ sender ‖ …`), the framing the relay checks for `GroupSend`.

/// Bytes of the envelope header: version, sender index, sequence number, send time.
pub const HEADER_LEN: usize = 1 + 4 + 8 + 8;
/// Envelope version byte the relay checks.
const ENVELOPE_VERSION: u8 = 0x01;
/// Group-envelope kinds (docs/PROTOCOL.md §13): application message, commit, Welcome.
pub const GROUP_KIND_MESSAGE: u8 = 0x03;
/// Commit kind.
pub const GROUP_KIND_COMMIT: u8 = 0x04;
/// Welcome kind.
pub const GROUP_KIND_WELCOME: u8 = 0x05;

/// Write the header at the start of `envelope`; in group mode the group kind byte sits
/// between version and sender (the relay checks it), so the header is one byte longer.
pub fn write_header(envelope: &mut [u8], group: bool, sender: u32, seq: u64, ts_ns: u64) {
    let mut header = [0u8; HEADER_LEN];
    header[0] = ENVELOPE_VERSION;
    header[1..5].copy_from_slice(&sender.to_be_bytes());
    header[5..13].copy_from_slice(&seq.to_be_bytes());
    header[13..21].copy_from_slice(&ts_ns.to_be_bytes());
    if group {
        let mut framed = [0u8; HEADER_LEN + 1];
        framed[0] = ENVELOPE_VERSION;
        framed[1] = GROUP_KIND_MESSAGE;
        framed[2..].copy_from_slice(&header[1..]);
        if let Some(dst) = envelope.get_mut(..HEADER_LEN + 1) {
            dst.copy_from_slice(&framed);
        }
    } else if let Some(dst) = envelope.get_mut(..HEADER_LEN) {
        dst.copy_from_slice(&header);
    }
}

/// Whether a group delivery is set-up traffic (a commit or a Welcome).
pub fn is_group_control(envelope: &[u8]) -> bool {
    matches!(
        envelope,
        [ENVELOPE_VERSION, GROUP_KIND_COMMIT | GROUP_KIND_WELCOME, ..]
    )
}

pub fn read_header(envelope: &[u8], group: bool) -> Option<(u32, u64, u64)> {
    let header: [u8; HEADER_LEN] = if group {
        match envelope {
            [ENVELOPE_VERSION, GROUP_KIND_MESSAGE, rest @ ..] => {
                let mut h = [0u8; HEADER_LEN];
                h[0] = ENVELOPE_VERSION;
                h[1..].copy_from_slice(rest.get(..HEADER_LEN - 1)?);
                h
            }
            _ => return None,
        }
    } else {
        envelope.get(..HEADER_LEN)?.try_into().ok()?
    };
    let [version, s0, s1, s2, s3, q0, q1, q2, q3, q4, q5, q6, q7, t0, t1, t2, t3, t4, t5, t6, t7] =
        header;
    (version == ENVELOPE_VERSION).then_some((
        u32::from_be_bytes([s0, s1, s2, s3]),
        u64::from_be_bytes([q0, q1, q2, q3, q4, q5, q6, q7]),
        u64::from_be_bytes([t0, t1, t2, t3, t4, t5, t6, t7]),
    ))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let mut envelope = vec![0u8; 256];
        write_header(&mut envelope, false, 7, 1 << 40, 123_456_789);
        assert_eq!(envelope[0], 0x01);
        assert_eq!(
            read_header(&envelope, false),
            Some((7, 1 << 40, 123_456_789))
        );
        assert_eq!(read_header(&envelope[..20], false), None);
        envelope[0] = 2;
        assert_eq!(read_header(&envelope, false), None);
    }

    #[test]
    fn group_header_is_a_group_message_envelope() {
        let mut envelope = vec![0u8; 256];
        write_header(&mut envelope, true, 9, 42, 7);
        assert_eq!(envelope[..2], [0x01, GROUP_KIND_MESSAGE]);
        assert_eq!(read_header(&envelope, true), Some((9, 42, 7)));
        assert_eq!(read_header(&envelope[..HEADER_LEN], true), None);
        assert!(!is_group_control(&envelope));
        assert!(is_group_control(&[0x01, GROUP_KIND_COMMIT, 0]));
        assert!(is_group_control(&[0x01, GROUP_KIND_WELCOME, 0]));
        envelope[1] = GROUP_KIND_COMMIT;
        assert_eq!(read_header(&envelope, true), None);
    }
}
