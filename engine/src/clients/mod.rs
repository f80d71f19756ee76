//! Clients for the servers a run talks to. Bringing a server up is `services`' job; these
//! talk to one that answers.

pub mod comfyui;
pub mod gpu;
pub mod openai;
