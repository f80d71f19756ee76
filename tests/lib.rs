//! The integration tests, compiled into one binary (linking one binary instead of many saves
//! minutes on a 2-core machine). Each module runs the real `cinepipe` binary or the library.

mod common;
mod harness;

mod bench;
mod cli;
mod comfy_marker;
mod comfy_remote;
mod comfyui;
mod deploy;
mod disk_full;
mod doctor;
mod feedback;
mod invalid_specs;
mod kill;
mod llm;
mod prompts;
mod properties;
mod quality_render;
mod report;
mod run;
mod schemas;
mod sentinel;
mod serve;
mod services;
mod signals;
mod sweep;
mod verify;
