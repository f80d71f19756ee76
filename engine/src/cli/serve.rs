//! `cinepipe serve`: the local web view (`crate::serve`). Loopback by default; another address
//! needs `--allow-remote` and is warned about.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::output::{outln, runtime};
use crate::exit::ExitCode;

pub(crate) fn serve(runs_dir: PathBuf, addr: SocketAddr, allow_remote: bool) -> ExitCode {
    let loopback = crate::serve::is_loopback(&addr);
    if !loopback && !allow_remote {
        eprintln!(
            "error: {addr} is not a loopback address; the view has no authentication, so \
             serving it to the network needs --allow-remote"
        );
        return ExitCode::Usage;
    }
    if !runs_dir.is_dir() {
        eprintln!("error: `{}` is not a folder", runs_dir.display());
        return ExitCode::Io;
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {addr}: {e}");
                return ExitCode::Io;
            }
        };
        let bound = listener.local_addr().unwrap_or(addr);
        if loopback {
            outln!(
                "serving {} on http://{bound}/ (loopback only: this machine alone can reach it)",
                runs_dir.display()
            );
        } else {
            eprintln!(
                "warning: serving {} on {bound} to the network, without authentication: \
                 anyone who reaches this port can read the runs and rate them",
                runs_dir.display()
            );
            outln!("serving {} on http://{bound}/", runs_dir.display());
        }
        match crate::serve::serve(runs_dir, listener).await {
            Ok(()) => ExitCode::Success,
            Err(e) => {
                eprintln!("error: the server stopped: {e}");
                ExitCode::Io
            }
        }
    })
}
