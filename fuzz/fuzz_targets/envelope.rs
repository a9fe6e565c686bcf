//! cargo-fuzz entry point for `hush_fuzz_targets::envelope`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hush_fuzz_targets::envelope(data));
