//! The ComfyUI custom node package (`comfyui_nodes/cinepipe_nodes`), compiled into the binary,
//! and `cinepipe install-node`, which puts it into a ComfyUI's `custom_nodes/`.
//!
//! The package is embedded so that an installed `cinepipe` can install the node that matches
//! its own `await-marker` stage, with no checkout at hand. A unit test keeps the embedded list
//! equal to the files in the repository.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The package's folder name under `custom_nodes/`.
pub const PACKAGE: &str = "cinepipe_nodes";

/// The package's files (its tests stay in the repository).
pub const FILES: [(&str, &str); 4] = [
    (
        "__init__.py",
        include_str!("../../comfyui_nodes/cinepipe_nodes/__init__.py"),
    ),
    (
        "marker_io.py",
        include_str!("../../comfyui_nodes/cinepipe_nodes/marker_io.py"),
    ),
    (
        "nodes.py",
        include_str!("../../comfyui_nodes/cinepipe_nodes/nodes.py"),
    ),
    (
        "scene_card.py",
        include_str!("../../comfyui_nodes/cinepipe_nodes/scene_card.py"),
    ),
];

/// What `install` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// There was no copy; now there is.
    Installed,
    /// A different copy was replaced.
    Updated,
    /// The copy there was already this one; nothing was written.
    UpToDate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub action: Action,
    /// `<comfyui-dir>/custom_nodes/cinepipe_nodes`.
    pub dest: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{0} is not a folder")]
    NotAFolder(PathBuf),
    #[error(
        "{0} does not look like a ComfyUI folder (no main.py and no custom_nodes/); pass the folder that holds ComfyUI's main.py"
    )]
    NotComfyUi(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl InstallError {
    /// Whether the fault is the argument (usage) rather than the file system.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            InstallError::NotAFolder(_) | InstallError::NotComfyUi(_)
        )
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `dest` holds exactly the embedded files (compiled Python caches aside).
fn up_to_date(dest: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dest) else {
        return false;
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "__pycache__")
        .collect();
    names.sort();
    let mut want: Vec<&str> = FILES.iter().map(|(n, _)| *n).collect();
    want.sort_unstable();
    names == want
        && FILES
            .iter()
            .all(|(n, text)| std::fs::read(dest.join(n)).is_ok_and(|b| b == text.as_bytes()))
}

/// Copies the package into `<comfyui_dir>/custom_nodes/cinepipe_nodes`.
///
/// The new copy is written beside it under a name ending in `.disabled` (which ComfyUI skips
/// when it loads custom nodes, so a crash mid-copy never leaves a half package that ComfyUI
/// would import), fsync'd, then renamed into place; an older copy is moved aside first and
/// removed after. Running it again with the same binary changes nothing.
pub fn install(comfyui_dir: &Path) -> Result<Installed, InstallError> {
    if !comfyui_dir.is_dir() {
        return Err(InstallError::NotAFolder(comfyui_dir.to_path_buf()));
    }
    let custom = comfyui_dir.join("custom_nodes");
    if !comfyui_dir.join("main.py").is_file() && !custom.is_dir() {
        return Err(InstallError::NotComfyUi(comfyui_dir.to_path_buf()));
    }
    std::fs::create_dir_all(&custom).map_err(io(&custom))?;
    let dest = custom.join(PACKAGE);
    let existed = dest.exists();
    if existed && up_to_date(&dest) {
        return Ok(Installed {
            action: Action::UpToDate,
            dest,
        });
    }
    let pid = std::process::id();
    let tmp = custom.join(format!(".{PACKAGE}.new-{pid}.disabled"));
    let old = custom.join(format!(".{PACKAGE}.old-{pid}.disabled"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let written = (|| {
        for (name, text) in FILES {
            let p = tmp.join(name);
            let mut f = std::fs::File::create(&p).map_err(io(&p))?;
            f.write_all(text.as_bytes()).map_err(io(&p))?;
            f.sync_all().map_err(io(&p))?;
        }
        crate::stages::comfy_files::sync_dir(&tmp);
        if existed {
            let _ = std::fs::remove_dir_all(&old);
            std::fs::rename(&dest, &old).map_err(io(&dest))?;
        }
        std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
        crate::stages::comfy_files::sync_dir(&custom);
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        // Put the old copy back if it was moved aside.
        if existed && !dest.exists() {
            let _ = std::fs::rename(&old, &dest);
        }
        return Err(e);
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(Installed {
        action: if existed {
            Action::Updated
        } else {
            Action::Installed
        },
        dest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_files_are_the_package_in_the_repository() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../comfyui_nodes")
            .join(PACKAGE);
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("comfyui_nodes/cinepipe_nodes")
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".py"))
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = FILES.iter().map(|(n, _)| *n).collect();
        assert_eq!(on_disk, embedded, "add new package files to FILES");
    }

    #[test]
    fn installs_updates_and_is_idempotent() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(d.path().join("main.py"), "").expect("main.py");
        let r = install(d.path()).expect("install");
        assert_eq!(r.action, Action::Installed);
        assert!(r.dest.join("nodes.py").is_file());
        assert_eq!(install(d.path()).expect("again").action, Action::UpToDate);
        // A __pycache__ written by ComfyUI does not make the copy stale.
        std::fs::create_dir_all(r.dest.join("__pycache__")).expect("pycache");
        assert_eq!(install(d.path()).expect("again").action, Action::UpToDate);
        std::fs::write(r.dest.join("nodes.py"), "# edited").expect("edit");
        std::fs::write(r.dest.join("stale.py"), "").expect("stale");
        assert_eq!(install(d.path()).expect("update").action, Action::Updated);
        assert!(!r.dest.join("stale.py").exists());
        let names: Vec<String> = std::fs::read_dir(d.path().join("custom_nodes"))
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [PACKAGE], "no temp folders are left");
    }

    #[test]
    fn refuses_what_is_not_a_comfyui_folder() {
        let d = tempfile::tempdir().expect("tempdir");
        let e = install(d.path()).expect_err("empty folder");
        assert!(
            e.is_usage()
                && e.to_string()
                    .contains("does not look like a ComfyUI folder"),
            "{e}"
        );
        let e = install(&d.path().join("missing")).expect_err("missing");
        assert!(
            e.is_usage() && e.to_string().contains("is not a folder"),
            "{e}"
        );
    }
}
