//! cargo-fuzz entry point for `hush_fuzz_targets::group_message`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hush_fuzz_targets::group_message(data));
