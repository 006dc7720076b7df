//! Feeds arbitrary bytes to the RESP request parser, the way a connection does: parse the
//! buffer repeatedly, consuming each complete command, until it asks for more bytes or
//! reports a protocol error. Checks the parser's contract on the way: it never panics, never
//! consumes more than it was given, always makes progress on a command, and an "incomplete"
//! answer always asks for more than the buffer holds. Also checks that the inline splitter and
//! glob matcher survive the same input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mantisd::resp::codec::{parse_command, split_inline_args, Limits, Parsed};
use mantisd::resp::glob::glob_match;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        bulk_bytes_max: 4096,
        array_len_max: 1024,
        inline_bytes_max: 4096,
    };
    let mut rest = data;
    loop {
        match parse_command(rest, &limits) {
            Ok(Parsed::Command { args, consumed }) => {
                assert!(consumed > 0 && consumed <= rest.len());
                assert!(args.len() <= limits.array_len_max);
                assert!(args
                    .iter()
                    .all(|a| a.len() <= limits.bulk_bytes_max.max(limits.inline_bytes_max)));
                rest = &rest[consumed..];
            }
            Ok(Parsed::Incomplete { needed_bytes_min }) => {
                assert!(needed_bytes_min > rest.len());
                break;
            }
            Err(e) => {
                assert!(e.to_string().starts_with("Protocol error: "));
                break;
            }
        }
    }
    let _ = split_inline_args(data);
    if let Some((pattern, key)) = data
        .split_first()
        .map(|(n, tail)| tail.split_at(usize::from(*n).min(tail.len())))
    {
        let _ = glob_match(pattern, key);
    }
});
