//! The `cinepipe` binary: parse the arguments, run, exit with the command's code.

fn main() -> std::process::ExitCode {
    cinepipe::cli::run(std::env::args_os()).into()
}
