//! Whole runs through the composition root: resume, and what the real stages and the telemetry
//! make of a scripted run.

mod quality;
mod resume;
mod telemetry;
