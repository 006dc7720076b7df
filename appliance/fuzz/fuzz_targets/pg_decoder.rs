//! Feeds arbitrary bytes to the PostgreSQL message decoder the way a connection does: the
//! first byte picks whether the stream starts with a startup packet, then typed messages are
//! decoded one after another until one is incomplete or an error is reported. Checks the
//! decoder's contract: no panic, never consumes more than it was given, always makes progress,
//! an "incomplete" answer asks for more than the buffer holds, errors carry a 5-character
//! SQLSTATE, and the psql pattern matcher and SCRAM/md5 parsing survive the same input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mantisd::pg::auth::{AuthMethod, AuthState};
use mantisd::pg::catalog::regex_match;
use mantisd::pg::codec::{decode_message, decode_startup, Decoded};

const MESSAGE_BYTES_MAX: usize = 8192;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        match decode_startup(rest) {
            Ok(Decoded::Done { consumed, .. }) => {
                assert!(consumed >= 8 && consumed <= rest.len());
                rest = &rest[consumed..];
            }
            Ok(Decoded::Incomplete { needed_bytes_min }) => {
                assert!(needed_bytes_min > rest.len());
                return;
            }
            Err(e) => {
                assert_eq!(e.sqlstate.len(), 5);
                return;
            }
        }
    }
    loop {
        match decode_message(rest, MESSAGE_BYTES_MAX) {
            Ok(Decoded::Done { consumed, .. }) => {
                assert!(consumed >= 5 && consumed <= rest.len());
                assert!(consumed <= MESSAGE_BYTES_MAX + 1);
                rest = &rest[consumed..];
            }
            Ok(Decoded::Incomplete { needed_bytes_min }) => {
                assert!(needed_bytes_min > rest.len());
                assert!(needed_bytes_min <= MESSAGE_BYTES_MAX + 1);
                break;
            }
            Err(e) => {
                assert_eq!(e.sqlstate.len(), 5);
                break;
            }
        }
    }
    // The same bytes as SCRAM client messages and as a psql name pattern.
    let mut sink = Vec::new();
    let mut scram = AuthState::begin(AuthMethod::ScramSha256, &mut sink);
    if scram.step(data, "u", "pw", &mut sink).is_ok() {
        let _ = scram.step(data, "u", "pw", &mut sink);
    }
    let text = String::from_utf8_lossy(data);
    let _ = regex_match(&text, "some_table");
});
