//! cargo-fuzz entry point for `hush_fuzz_targets::ratchet_decrypt`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hush_fuzz_targets::ratchet_decrypt(data));
