//! Which paths the frames stages accept: relative paths that stay inside the output folder, and
//! the files a server names (type `output`, a plain name, in the prefix's folder).

use std::path::{Component, Path};

use crate::clients::comfyui::{ViewPathError, check_view_name, check_view_subfolder};

/// Why a path from the spec or a server is not a relative path inside the output folder; `what`
/// names it (`prefix`, `pattern`, `subfolder`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafePath {
    #[error("{what} is empty")]
    Empty { what: String },
    #[error("{what} {rel:?} contains a NUL byte")]
    Nul { what: String, rel: String },
    #[error("{what} `{rel}` contains `..`; it must stay inside the ComfyUI output folder")]
    ParentDir { what: String, rel: String },
    #[error("{what} `{rel}` is absolute; it must be relative to the ComfyUI output folder")]
    Absolute { what: String, rel: String },
    #[error("{what} `{rel}` contains `\\`; use `/`")]
    Backslash { what: String, rel: String },
}

/// Checks that `rel` is a relative path that stays inside the folder it is joined to: not
/// absolute, no `..`, no drive or root, not empty.
pub fn check_relative(what: &str, rel: &str) -> Result<(), UnsafePath> {
    let (what, rel_owned) = (what.to_owned(), rel.to_owned());
    if rel.trim().is_empty() {
        return Err(UnsafePath::Empty { what });
    }
    if rel.contains('\0') {
        return Err(UnsafePath::Nul {
            what,
            rel: rel_owned,
        });
    }
    let p = Path::new(rel);
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(UnsafePath::ParentDir {
                    what,
                    rel: rel_owned,
                });
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(UnsafePath::Absolute {
                    what,
                    rel: rel_owned,
                });
            }
        }
    }
    if rel.contains('\\') {
        return Err(UnsafePath::Backslash {
            what,
            rel: rel_owned,
        });
    }
    Ok(())
}

/// Why a file the server names is not fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerFileError {
    #[error("{filename}: of type `{kind}`, not `output`")]
    NotOutput { filename: String, kind: String },
    #[error("refused: {0}")]
    BadName(ViewPathError),
    #[error("{filename}: {source}")]
    UnsafeSubfolder {
        filename: String,
        source: UnsafePath,
    },
    #[error("{filename}: {source}")]
    BadSubfolder {
        filename: String,
        source: ViewPathError,
    },
    #[error("{subfolder}/{filename}: not in the prefix's folder `{folder}`")]
    OutsideFolder {
        subfolder: String,
        filename: String,
        folder: String,
    },
}

/// The folder part of a prefix (`cinepipe/r/s/a1` of `cinepipe/r/s/a1/frame`), `""` for none,
/// with `/` separators: the `subfolder` ComfyUI reports for the files it wrote with it.
pub fn prefix_folder(prefix: &str) -> String {
    Path::new(prefix)
        .parent()
        .map(|p| {
            p.components()
                .filter_map(|c| match c {
                    Component::Normal(n) => n.to_str(),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_default()
}

/// Checks a file that the server names (in `/history` or a marker's `Files`) before it is
/// fetched: of type `output`, a plain name, in the prefix's folder. Returns why not.
pub fn check_server_file(
    filename: &str,
    subfolder: &str,
    kind: &str,
    folder: &str,
) -> Result<(), ServerFileError> {
    if kind != "output" {
        return Err(ServerFileError::NotOutput {
            filename: filename.to_owned(),
            kind: kind.to_owned(),
        });
    }
    check_view_name(filename).map_err(ServerFileError::BadName)?;
    if !subfolder.is_empty() {
        check_relative("subfolder", subfolder).map_err(|source| {
            ServerFileError::UnsafeSubfolder {
                filename: filename.to_owned(),
                source,
            }
        })?;
    }
    check_view_subfolder(subfolder).map_err(|source| ServerFileError::BadSubfolder {
        filename: filename.to_owned(),
        source,
    })?;
    if Path::new(subfolder) != Path::new(folder) {
        return Err(ServerFileError::OutsideFolder {
            subfolder: subfolder.to_owned(),
            filename: filename.to_owned(),
            folder: folder.to_owned(),
        });
    }
    Ok(())
}

/// The relative path of a server's file, as a glob sees it (`subfolder/filename`).
pub fn server_rel(subfolder: &str, filename: &str) -> String {
    if subfolder.is_empty() {
        filename.to_owned()
    } else {
        format!("{subfolder}/{filename}")
    }
}
