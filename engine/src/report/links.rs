//! Links from the report to the files it describes: relative to where the report is written,
//! so the report and its folder can be moved or downloaded together (a CI artifact).

use std::path::{Component, Path, PathBuf};

/// Makes `href`s from the reported folder's relative paths.
#[derive(Debug, Clone)]
pub(crate) struct Links {
    /// The reported folder, as seen from the report's folder (`""` when they are the same).
    prefix: String,
}

impl Links {
    /// Links for a report of `dir` written to `out`.
    pub(crate) fn new(dir: &Path, out: &Path) -> Links {
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        let out_dir = abs(out).parent().map(Path::to_path_buf).unwrap_or_default();
        let rel = relative(&normalise(&out_dir), &normalise(&abs(dir)));
        let mut prefix = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        if !prefix.is_empty() {
            prefix.push('/');
        }
        Links { prefix }
    }

    /// The links of a folder inside the reported one (a sweep's run folder).
    pub(crate) fn below(&self, rel: &str) -> Links {
        let mut prefix = format!("{}{}", self.prefix, rel.trim_end_matches('/'));
        prefix.push('/');
        Links { prefix }
    }

    /// The `href` of `rel` (a path relative to the reported folder, `/`-separated).
    pub(crate) fn href(&self, rel: &str) -> String {
        encode(&format!("{}{rel}", self.prefix))
    }
}

/// `..` and `.` taken out without touching the file system.
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The path from folder `from` to `to`, both absolute and normalised.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    out
}

/// Percent-encodes what a relative URL cannot hold as it is (spaces, `#`, `?`, `%`, non-ASCII),
/// keeping `/` as the separator.
pub(crate) fn encode(path: &str) -> String {
    let mut s = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~!$&'()*+,;=:@".contains(&b) {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_relative_to_the_report_and_encoded() {
        let l = Links::new(Path::new("/r/runs/a"), Path::new("/r/runs/a/report.html"));
        assert_eq!(l.href("stages/x y/#1.png"), "stages/x%20y/%231.png");
        let l = Links::new(Path::new("/r/runs/a"), Path::new("/r/out/report.html"));
        assert_eq!(l.href("run.json"), "../runs/a/run.json");
        assert_eq!(
            l.below("runs/b").href("run.json"),
            "../runs/a/runs/b/run.json"
        );
        let l = Links::new(Path::new("/r/runs/./a/../a"), Path::new("/r/report.html"));
        assert_eq!(l.href("run.json"), "runs/a/run.json");
    }
}
