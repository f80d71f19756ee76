//! The folder checks of `cinepipe doctor`: writable (a file made and removed in it) and free
//! space (`statvfs`), for ComfyUI's output folder and the run folder.

use std::path::{Path, PathBuf};

use super::checks::{check, hint};
use super::{Check, Status};

/// Free bytes for an unprivileged user on the file system holding `path`.
fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated path; statvfs only writes into `st`.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The folder, or the nearest existing folder above it (where it would be made).
fn existing(path: &Path) -> Option<PathBuf> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    abs.ancestors().find(|p| p.is_dir()).map(Path::to_path_buf)
}

/// A folder: writable (a file made and removed in it) and its free space. `must_exist`: a
/// server's output folder that is not there is a failure; a run folder is made by the run.
pub(super) fn folder(subject: &str, path: &Path, min_free_gb: f64, must_exist: bool) -> Vec<Check> {
    let shown = path.display().to_string();
    let what = if must_exist {
        "output folder"
    } else {
        "run folder"
    };
    if must_exist && !path.is_dir() {
        return vec![hint(
            check(subject, &shown, what, Status::Fail, "not there".into()),
            "start ComfyUI with `--output-dir` this folder, or fix the service's `output_dir`",
        )];
    }
    let Some(dir) = existing(path) else {
        return vec![check(
            subject,
            &shown,
            what,
            Status::Fail,
            "no folder of this path exists".into(),
        )];
    };
    let mut out = Vec::new();
    let probe = dir.join(format!(".cinepipe-doctor-{}", std::process::id()));
    let writable = std::fs::write(&probe, b"").and_then(|()| std::fs::remove_file(&probe));
    out.push(match writable {
        Ok(()) => check(
            subject,
            &shown,
            what,
            Status::Ok,
            if dir == path || (path.is_relative() && path.is_dir()) {
                "writable".into()
            } else {
                format!("not made yet; {} is writable", dir.display())
            },
        ),
        Err(e) => hint(
            check(
                subject,
                &shown,
                what,
                Status::Fail,
                format!("cannot write in {}: {e}", dir.display()),
            ),
            "give this user write access, or choose another folder",
        ),
    });
    out.push(match free_bytes(&dir) {
        Ok(b) => {
            let gb = b as f64 / 1e9;
            let c = check(
                subject,
                &shown,
                "free space",
                if gb < min_free_gb {
                    Status::Warn
                } else {
                    Status::Ok
                },
                format!("{gb:.1} GB free"),
            );
            if gb < min_free_gb {
                hint(
                    c,
                    format!(
                        "under {min_free_gb} GB: a run writes every frame twice (ComfyUI's output and the run folder); free space or move the folder"
                    ),
                )
            } else {
                c
            }
        }
        Err(e) => check(
            subject,
            &shown,
            "free space",
            Status::Warn,
            format!("cannot tell: {e}"),
        ),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_that_is_not_made_yet_is_judged_by_the_folder_it_would_be_made_in() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let later = tmp.path().join("a/b/runs");
        let checks = folder("run folder", &later, 0.0, false);
        assert_eq!(checks[0].status, Status::Ok, "{:?}", checks[0]);
        assert!(
            checks[0].detail.starts_with("not made yet"),
            "{:?}",
            checks[0]
        );
        assert_eq!(checks[1].check, "free space");
        // A server's output folder must be there.
        let checks = folder("comfy", &later, 0.0, true);
        assert_eq!(checks[0].status, Status::Fail);
        // An impossible free-space floor warns.
        let checks = folder("run folder", tmp.path(), 1e12, false);
        assert_eq!(checks[1].status, Status::Warn, "{:?}", checks[1]);
        assert!(checks[1].hint.is_some());
    }
}
