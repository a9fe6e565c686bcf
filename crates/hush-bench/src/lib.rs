//! Benchmarks for hush; the code lives in `benches/` (run `cargo bench -p hush-bench`), and this
//! library is empty so that the package is a normal workspace member.
