//! What `await-marker` and `collect-frames` share: the contract they read from upstream
//! outputs, where the ComfyUI output folder is (this machine, or a remote server read over
//! HTTP), and file access that never leaves it.
//!
//! # What they read upstream
//!
//! Both stages read the nearest needed stage (`StageContext::inputs`, in `needs` order) of kind
//! `queue` or `await-marker`, as its kind's output type ([`crate::stages::output`]): the
//! [`RenderRef`] every such output carries (the prefix, the service and server that ran it,
//! the prompt id, the `queue` attempt, an output folder, the files `/history` listed), and
//! for an `await-marker` upstream its whole [`MarkerOutput`] (the files a detected marker
//! lists). An upstream output that is not its kind's type fails the attempt (`invalid-output`).
//! `await-marker` passes the render on in its own output, so `collect-frames` after it finds
//! it too. Without a `service`, the spec's only `comfyui` service is used.
//!
//! # Where the output folder is
//!
//! [`output`]: upstream's `output_dir`, else the service's, is a folder on this machine
//! ([`Output::Local`]), read without following a symbolic link. A service without
//! `output_dir` is a server on another host ([`Output::Remote`]): its files are fetched with
//! `GET /view?filename=&subfolder=&type=output` from upstream's `server` (else the service's
//! first URL), never through a shared disk. Only names the server or a marker gave are
//! fetched, and only after [`check_server_file`]: a plain name of type `output` in the
//! prefix's folder; they are written under plain base names into folders of the run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod download;
mod local;
mod paths;
pub use paths::{
    ServerFileError, UnsafePath, check_relative, check_server_file, prefix_folder, server_rel,
};

pub use download::{Downloaded, Fetch, MAX_FRAME_BYTES, download_into};
pub use local::{
    Listed, Listing, copy_into_staging, copy_nofollow, list, literal_base, run_relative, safe_join,
    sync_dir,
};

use super::output::{MarkerOutput, RenderRef};
use crate::clients::comfyui::{ComfyClient, ComfyError};
use crate::exec::{StageContext, StageFailure};
use crate::spec::model::{ComfyUiService, FailureClass, Service, Stage as SpecStage, StageKind};

/// What the stages read from upstream: the nearest needed `queue` or `await-marker` stage's
/// render, and the marker stage's whole output when that is the one.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// The render as upstream wrote it (passed on as it came).
    pub render: RenderRef,
    /// The `queue` attempt that rendered it: upstream's `attempt`, else the prefix's `a<N>`.
    pub attempt: Option<u32>,
    /// The `await-marker` output it came from, when it did.
    pub marker: Option<MarkerOutput>,
}

impl Upstream {
    /// The nearest needed stage (in `needs` order) that carries a render: a `queue` or an
    /// `await-marker` stage, whose output is read as its kind's type.
    pub fn find(ctx: &StageContext) -> Result<Upstream, StageFailure> {
        let invalid = |m: String| StageFailure::new(FailureClass::InvalidOutput, m);
        for (name, value) in &ctx.inputs {
            let kind = ctx.spec.spec.stages.get(name).map(SpecStage::kind);
            let not_kind = |e: serde_json::Error| {
                invalid(format!(
                    "the output of `{name}` is not a {} output: {e}",
                    kind.map_or("known", |k| k.as_str())
                ))
            };
            let (render, marker) = match kind {
                Some(StageKind::Queue) => (
                    serde_json::from_value::<RenderRef>(value.as_ref().clone())
                        .map_err(not_kind)?,
                    None,
                ),
                Some(StageKind::AwaitMarker) => {
                    let marker = serde_json::from_value::<MarkerOutput>(value.as_ref().clone())
                        .map_err(not_kind)?;
                    (marker.render.clone(), Some(marker))
                }
                _ => continue,
            };
            return Ok(Upstream {
                attempt: render.attempt.or_else(|| attempt_in_prefix(&render.prefix)),
                render,
                marker,
            });
        }
        let names: Vec<&str> = ctx.inputs.iter().map(|(n, _)| n.as_str()).collect();
        Err(invalid(format!(
            "no upstream output has a `prefix` (needs: {}); await-marker and collect-frames follow a `queue` stage",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )))
    }
}

/// The queue attempt a prefix names: its folder `a<N>` (`cinepipe/<run>/<stage>/<item>-<scene>/a2/frame`).
pub fn attempt_in_prefix(prefix: &str) -> Option<u32> {
    let parent = Path::new(prefix).parent()?.file_name()?.to_str()?;
    parent.strip_prefix('a')?.parse().ok()
}

/// The `comfyui` service that rendered this item: the one upstream names, else the spec's only
/// one.
pub fn service<'a>(
    ctx: &'a StageContext,
    up: &Upstream,
) -> Result<(&'a str, &'a ComfyUiService), StageFailure> {
    let fail = |m: String| StageFailure::new(FailureClass::InvalidOutput, m);
    let comfy: Vec<(&str, &ComfyUiService)> = ctx
        .spec
        .spec
        .services
        .iter()
        .filter_map(|(n, s)| match s {
            Service::Comfyui(c) => Some((n.as_str(), c)),
            _ => None,
        })
        .collect();
    match &up.render.service {
        Some(want) => comfy
            .iter()
            .find(|(n, _)| n == want)
            .copied()
            .ok_or_else(|| {
                fail(format!(
                    "upstream names service `{want}`, which is not a comfyui service of the spec"
                ))
            }),
        None if comfy.len() == 1 => Ok(comfy[0]),
        None => Err(fail(format!(
            "cannot tell which ComfyUI service rendered this item: the upstream output names no `service` and the spec has {} comfyui services",
            comfy.len()
        ))),
    }
}

/// Where the ComfyUI output folder of this item is.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// On this machine: the folder, resolved against the spec's folder and then to its real
    /// path (so that containment checks compare real paths).
    Local(PathBuf),
    /// On the server's host only: read over HTTP with `/view`.
    Remote(Remote),
}

/// A server whose output folder is read over HTTP (`/view`).
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    /// The server that rendered the item: upstream's `server`, else the service's first URL.
    pub server: String,
    /// The spec's name of the `comfyui` service.
    pub service: String,
    /// The service's `timeout_s`: the bound on each request.
    pub timeout: Duration,
}

impl Remote {
    /// The process-wide client of the server.
    pub fn client(&self) -> Result<Arc<ComfyClient>, StageFailure> {
        ComfyClient::shared(&self.server, self.timeout)
            .map_err(|e| StageFailure::new(e.class(), e.to_string()))
    }

    /// The fallback note that says why files came over HTTP.
    pub fn note(&self, what: &str) -> String {
        format!(
            "{what} read over HTTP (`/view` of {}) because service `{}` has no `output_dir`",
            self.server, self.service
        )
    }
}

/// The ComfyUI output folder for this item: upstream's `output_dir`, else the service's; a
/// service without one is a remote server, read over HTTP.
pub fn output(ctx: &StageContext, up: &Upstream) -> Result<Output, StageFailure> {
    let fail = |m: String| StageFailure::new(FailureClass::InvalidOutput, m);
    let configured = match &up.render.output_dir {
        Some(d) => d.clone(),
        None => {
            let (name, svc) = service(ctx, up)?;
            match &svc.output_dir {
                Some(d) => d.clone(),
                None => {
                    let server = up
                        .render
                        .server
                        .clone()
                        .or_else(|| svc.urls.first().cloned())
                        .ok_or_else(|| {
                            fail(format!(
                                "service `{name}` has no `output_dir` and no URL, and the upstream output names no `server`: the frames cannot be read"
                            ))
                        })?;
                    return Ok(Output::Remote(Remote {
                        server,
                        service: name.to_owned(),
                        timeout: Duration::try_from_secs_f64(svc.timeout_s)
                            .unwrap_or(Duration::from_secs(30)),
                    }));
                }
            }
        }
    };
    let path = ctx.spec.resolve_path(&configured);
    std::fs::canonicalize(&path)
        .map(Output::Local)
        .map_err(|e| {
            fail(format!(
                "the ComfyUI output folder {} cannot be opened: {e}",
                path.display()
            ))
        })
}

/// Why a file of the output folder could not be listed, copied or fetched; the message names
/// the file.
#[derive(Debug, thiserror::Error)]
pub enum ComfyFilesError {
    #[error("{path} is a symbolic link; it is not followed")]
    SymbolicLink { path: PathBuf },
    #[error("{path} is not a folder")]
    NotAFolder { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} changed while it was being collected")]
    Changed { path: PathBuf },
    #[error("copy {from} to {to}: {source}")]
    Copy {
        from: String,
        to: PathBuf,
        source: std::io::Error,
    },
    #[error("flush {path}: {source}")]
    Flush {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `rel` is the server's `subfolder/filename`.
    #[error("{rel}: empty")]
    Empty { rel: String },
    #[error("{rel}: not on the server (HTTP 404)")]
    NotOnServer { rel: String },
    #[error(transparent)]
    Download(#[from] ComfyError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_that_stay_inside() {
        for ok in ["frame", "cinepipe/r/s/a1/frame", "./x"] {
            assert!(check_relative("prefix", ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("../x", "`..`"),
            ("a/../../x", "`..`"),
            ("/etc/passwd", "absolute"),
            ("a\\..\\b", "`\\`"),
            ("a\0b", "NUL"),
        ] {
            let e = check_relative("prefix", bad).expect_err(bad);
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn prefix_folders_are_the_subfolders_comfyui_reports() {
        assert_eq!(prefix_folder("cinepipe/r/s/a1/frame"), "cinepipe/r/s/a1");
        assert_eq!(prefix_folder("./a/frame"), "a");
        assert_eq!(prefix_folder("frame"), "");
        assert_eq!(server_rel("", "f.png"), "f.png");
        assert_eq!(server_rel("a/b", "f.png"), "a/b/f.png");
    }

    #[test]
    fn files_a_server_names_are_checked_before_they_are_fetched() {
        let folder = "cinepipe/r/s/a1";
        assert_eq!(
            check_server_file("frame_00001_.png", folder, "output", folder),
            Ok(())
        );
        assert_eq!(check_server_file("f.png", "", "output", ""), Ok(()));
        for (name, sub, kind, why) in [
            ("../x.png", folder, "output", "not a plain file name"),
            ("a/b.png", folder, "output", "not a plain file name"),
            ("a\\b.png", folder, "output", "not a plain file name"),
            ("..", folder, "output", "`..`"),
            ("", folder, "output", "empty"),
            ("frame_00001_.png", folder, "temp", "of type `temp`"),
            (
                "frame_00001_.png",
                "cinepipe/r/s/a2",
                "output",
                "not in the prefix's folder",
            ),
            ("frame_00001_.png", "cinepipe/r/s/a1/..", "output", "`..`"),
            ("frame_00001_.png", "/etc", "output", "absolute"),
            (
                "frame_00001_.png",
                "",
                "output",
                "not in the prefix's folder",
            ),
        ] {
            let e = check_server_file(name, sub, kind, folder)
                .expect_err(name)
                .to_string();
            assert!(e.contains(why), "{name:?} in {sub:?}: {e}");
        }
    }

    #[test]
    fn attempts_named_by_prefixes() {
        assert_eq!(attempt_in_prefix("cinepipe/r/scene-1/a2/frame"), Some(2));
        assert_eq!(attempt_in_prefix("cinepipe/r/scene-1/frame"), None);
        assert_eq!(attempt_in_prefix("frame"), None);
    }

    #[test]
    fn literal_bases() {
        assert_eq!(
            literal_base("cinepipe/r/s/a1/frame_*.png"),
            Path::new("cinepipe/r/s/a1")
        );
        assert_eq!(
            literal_base("cinepipe/*/frame_*.png"),
            Path::new("cinepipe")
        );
        assert_eq!(literal_base("frame_*.png"), Path::new(""));
        assert_eq!(literal_base("a/[b]/c.png"), Path::new("a"));
    }

    fn glob(p: &str) -> globset::GlobMatcher {
        globset::GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .expect("glob")
            .compile_matcher()
    }

    #[test]
    fn listing_does_not_follow_symlinks() {
        let d = tempfile::tempdir().expect("tempdir");
        let out = d.path().join("out");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(out.join("p")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(outside.join("secret_00001_.png"), b"secret").expect("write");
        std::fs::write(out.join("p/f_00001_.png"), b"png").expect("write");
        std::os::unix::fs::symlink(
            outside.join("secret_00001_.png"),
            out.join("p/f_00002_.png"),
        )
        .expect("symlink");
        std::os::unix::fs::symlink(&outside, out.join("link")).expect("symlink");
        std::fs::write(out.join("p/other.png"), b"x").expect("write");

        let l = list(&out, Path::new("p"), &glob("p/f_*.png"), 0).expect("list");
        assert_eq!(
            l.files.iter().map(|f| f.rel.as_str()).collect::<Vec<_>>(),
            ["p/f_00001_.png"]
        );
        assert_eq!(
            l.skipped,
            [(
                "p/f_00002_.png".to_owned(),
                "a symbolic link; not followed".to_owned()
            )]
        );

        // A symlinked folder on the way is refused, not walked.
        let e =
            list(&out, Path::new("link"), &glob("link/*.png"), 0).expect_err("symlinked folder");
        let e = e.to_string();
        assert!(e.contains("is a symbolic link"), "{e}");
        // `**` does not walk into a symlinked folder either.
        let l = list(&out, Path::new(""), &glob("**/*.png"), 8).expect("list");
        assert!(
            l.files.iter().all(|f| !f.rel.starts_with("link")),
            "{:?}",
            l.files
        );
        // A folder that does not exist yet lists nothing.
        let l = list(&out, Path::new("later"), &glob("later/*.png"), 0).expect("list");
        assert!(l.files.is_empty());
    }

    #[test]
    fn copy_refuses_a_file_swapped_for_a_symlink() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(d.path().join("a.png"), b"frame").expect("write");
        std::fs::write(d.path().join("secret"), b"frame").expect("write");
        let l = list(d.path(), Path::new(""), &glob("*.png"), 0).expect("list");
        // Swapped after the listing: O_NOFOLLOW refuses it.
        std::fs::remove_file(d.path().join("a.png")).expect("rm");
        std::os::unix::fs::symlink(d.path().join("secret"), d.path().join("a.png"))
            .expect("symlink");
        let e =
            copy_nofollow(d.path(), &l.files[0], &d.path().join("copy.png")).expect_err("symlink");
        let e = e.to_string();
        assert!(e.contains("a.png"), "{e}");
        assert!(!d.path().join("copy.png").exists());
    }

    #[test]
    fn staging_copies_are_whole_and_refuse_links_on_either_side() {
        let d = tempfile::tempdir().expect("tempdir");
        let out = d.path().join("out");
        let stage = d.path().join("stage");
        std::fs::create_dir_all(&out).expect("mkdir");
        std::fs::create_dir_all(&stage).expect("mkdir");
        for (name, body) in [
            ("a.png", &b"frame a"[..]),
            ("b.png", b"frame bb"),
            ("c.png", b"c"),
        ] {
            std::fs::write(out.join(name), body).expect("write");
        }
        std::fs::write(d.path().join("secret"), b"secret").expect("write");
        let l = list(&out, Path::new(""), &glob("*.png"), 0).expect("list");
        assert_eq!(l.files.len(), 3);
        // b.png is swapped for a link after the listing; c.png's destination is a link that
        // a copy would write through.
        std::fs::remove_file(out.join("b.png")).expect("rm");
        std::os::unix::fs::symlink(d.path().join("secret"), out.join("b.png")).expect("symlink");
        std::os::unix::fs::symlink(d.path().join("secret"), stage.join("c.png")).expect("symlink");
        let jobs: Vec<(&Listed, PathBuf)> =
            l.files.iter().map(|f| (f, stage.join(&f.rel))).collect();
        let r = copy_into_staging(&out, &jobs);
        assert!(r[0].is_ok(), "{r:?}");
        assert_eq!(
            std::fs::read(stage.join("a.png")).expect("copy"),
            b"frame a"
        );
        assert!(
            r[1].as_ref()
                .is_err_and(|e| e.to_string().contains("b.png")),
            "{r:?}"
        );
        assert!(!stage.join("b.png").exists());
        assert!(
            r[2].as_ref()
                .is_err_and(|e| e.to_string().contains("c.png")),
            "{r:?}"
        );
        assert_eq!(
            std::fs::read(d.path().join("secret")).expect("read"),
            b"secret"
        );
    }
}
