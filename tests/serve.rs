//! `cinepipe serve` through the real binary, over a copy of a real run (`report::shared_run`),
//! with a plain HTTP/1.1 client on a socket (so that `..` and encoded paths reach the server as
//! written): the runs list and its filter, the report page with its rating forms, the run's
//! files, a rating posted and read back, bad ratings and path traversal refused, and the
//! loopback default.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use crate::common::{cinepipe_in, stderr};
use crate::report::{copy_dir, shared_run};

/// Kills the server when the test ends, however it ends.
struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(runs: &std::path::Path, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cinepipe"))
        .arg("serve")
        .arg(runs)
        .args(["--addr", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the first line");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    assert!(line.contains("loopback only"), "{line}");
    Server(child, addr)
}

/// One request; the status and the body.
fn request(addr: &str, method: &str, path: &str, form: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connects");
    let body = form.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if form.is_some() {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("writes");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("reads");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[test]
fn the_web_view_lists_runs_shows_reports_takes_ratings_and_refuses_traversal() {
    let Some(shared) = shared_run() else {
        return;
    };
    let top = tempfile::tempdir().expect("tempdir");
    let runs = top.path().join("runs");
    let id = shared
        .file_name()
        .expect("id")
        .to_string_lossy()
        .into_owned();
    let run = runs.join(&id);
    copy_dir(shared, &run);
    std::fs::write(top.path().join("secret.txt"), "top secret").expect("write");
    let server = start(&runs, &[]);
    let addr = server.1.as_str();

    let (status, page) = request(addr, "GET", "/", None);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&format!("href=\"/runs/{id}/\"")), "{page}");
    let (_, page) = request(addr, "GET", "/?outcome=failed", None);
    assert!(
        !page.contains(&format!("/runs/{id}/")),
        "filtered out: {page}"
    );
    let (_, page) = request(addr, "GET", "/?spec=report&outcome=succeeded", None);
    assert!(page.contains(&format!("/runs/{id}/")), "{page}");

    let (status, page) = request(addr, "GET", &format!("/runs/{id}/"), None);
    assert_eq!(status, 200);
    assert!(page.contains("<form class=\"rate\" method=\"post\" action=\"feedback\">"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.to_ascii_lowercase().contains("<script"));
    let (status, body) = request(
        addr,
        "GET",
        &format!("/runs/{id}/artifact-metadata.json"),
        None,
    );
    assert_eq!(status, 200);
    assert!(body.contains("\"Scenes\""));

    // Out of the runs folder or the run folder, however it is spelt: refused, nothing read.
    for path in [
        "/runs/../secret.txt".to_owned(),
        "/runs/%2e%2e/secret.txt".to_owned(),
        "/runs/..%2fsecret.txt/".to_owned(),
        format!("/runs/{id}/../../secret.txt"),
        format!("/runs/{id}/%2e%2e/%2e%2e/secret.txt"),
        format!("/runs/{id}/..%2f..%2fsecret.txt"),
        format!("/runs/{id}/%2fetc%2fpasswd"),
        "/runs/.services/".to_owned(),
    ] {
        let (status, body) = request(addr, "GET", &path, None);
        assert!((400..500).contains(&status), "{path}: {status} {body}");
        assert!(
            !body.contains("top secret") && !body.contains("root:"),
            "{path}: {body}"
        );
    }

    // Ratings: bad ones are a 400 and change nothing; a good one is in the metadata.
    let meta = || std::fs::read(run.join("artifact-metadata.json")).expect("metadata");
    let before = meta();
    for form in [
        "scene=scene-1&rating=6",
        "scene=scene-1&rating=0",
        "scene=scene-1&rating=many",
        "scene=scene-9&rating=4",
    ] {
        let (status, body) = request(addr, "POST", &format!("/runs/{id}/feedback"), Some(form));
        assert_eq!(status, 400, "{form}: {body}");
    }
    let (status, _) = request(addr, "POST", "/runs/..%2f/feedback", Some("rating=4"));
    assert!((400..500).contains(&status));
    assert!(meta() == before, "nothing changed");
    let (status, body) = request(
        addr,
        "POST",
        &format!("/runs/{id}/feedback"),
        Some("scene=scene-1&rating=4&comment=steady+%3Cpan%3E&author="),
    );
    assert_eq!(status, 303, "{body}");
    let doc: cinepipe::artifact_metadata::ArtifactMetadata =
        serde_json::from_slice(&meta()).expect("typed");
    assert_eq!(doc.feedback.len(), 1);
    assert_eq!(doc.feedback[0].scene_id.as_deref(), Some("scene-1"));
    assert_eq!(doc.feedback[0].comment.as_deref(), Some("steady <pan>"));
    assert_eq!(doc.feedback[0].author, None);
    let (_, page) = request(addr, "GET", &format!("/runs/{id}/"), None);
    assert!(
        page.contains("steady &lt;pan&gt;"),
        "the rating is on the page"
    );
    let (_, page) = request(addr, "GET", "/", None);
    assert!(
        page.contains("<td>sci-fi</td>"),
        "the ratings summary: {page}"
    );
    drop(server);
    assert_eq!(
        cinepipe_in(top.path(), &["verify", run.to_str().expect("utf-8")])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn a_non_loopback_address_needs_allow_remote_and_is_warned_about() {
    let top = tempfile::tempdir().expect("tempdir");
    let out = cinepipe_in(top.path(), &["serve", ".", "--addr", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("--allow-remote"), "{}", stderr(&out));
    let mut child = Command::new(env!("CARGO_BIN_EXE_cinepipe"))
        .args(["serve", ".", "--addr", "0.0.0.0:0", "--allow-remote"])
        .current_dir(top.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let mut line = String::new();
    BufReader::new(child.stderr.take().expect("stderr"))
        .read_line(&mut line)
        .expect("a warning");
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("warning: serving"), "{line}");
    assert!(line.contains("without authentication"), "{line}");
}
