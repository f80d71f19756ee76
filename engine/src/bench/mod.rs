//! Benches: one spec under several variants (profiles, or profile overlays from a bench
//! file), run interleaved, compared with statistics a benchmarker can trust.

pub mod stats;
