//! cargo-fuzz entry point for `hush_fuzz_targets::relay_request`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hush_fuzz_targets::relay_request(data));
