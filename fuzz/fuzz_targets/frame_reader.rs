//! cargo-fuzz entry point for `hush_fuzz_targets::frame_reader`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hush_fuzz_targets::frame_reader(data));
