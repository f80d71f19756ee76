//! Tests of the ComfyUI client's requests that need no server: `/view` URLs and refused names.

use super::*;

#[test]
fn view_urls_encode_their_values() {
    let c = ComfyClient::new("http://127.0.0.1:8188/", Duration::from_secs(1)).expect("client");
    assert_eq!(
        c.view_url("frame_00001_.png", "cinepipe/run-1/scene-1/a1")
            .expect("url"),
        "http://127.0.0.1:8188/view?filename=frame_00001_.png&subfolder=cinepipe%2Frun-1%2Fscene-1%2Fa1&type=output"
    );
    // Spaces, `&`, `=`, `#`, `+` and non-ASCII cannot change the query.
    let u = c.view_url("a b&type=temp#+é.png", "").expect("url");
    assert_eq!(
        u,
        "http://127.0.0.1:8188/view?filename=a+b%26type%3Dtemp%23%2B%C3%A9.png&subfolder=&type=output"
    );
}

#[test]
fn view_names_that_are_not_plain_are_refused_before_any_request() {
    for ok in ["frame_00001_.png", "frame.done", "a b.png", ".hidden.png"] {
        assert_eq!(check_view_name(ok), Ok(()), "{ok}");
    }
    for bad in [
        "",
        ".",
        "..",
        "../x.png",
        "a/b.png",
        "/etc/passwd",
        "a\\b.png",
        "x..png",
        "a\0b",
        "frame.png [temp]",
    ] {
        assert!(check_view_name(bad).is_err(), "{bad:?}");
    }
    for ok in ["", "a", "cinepipe/r/s/a1"] {
        assert_eq!(check_view_subfolder(ok), Ok(()), "{ok}");
    }
    for bad in [
        "/abs", "../up", "a/../b", "a//b", "./a", "a/", "a\\b", "a\0",
    ] {
        assert!(check_view_subfolder(bad).is_err(), "{bad:?}");
    }
    let c = ComfyClient::new("http://127.0.0.1:9", Duration::from_secs(1)).expect("client");
    let e = c.view_url("../x.png", "").expect_err("refused");
    assert!(
        matches!(&e, ComfyError::Protocol { message, .. } if message.contains("plain file name")),
        "{e}"
    );
    assert_eq!(e.class(), crate::spec::model::FailureClass::InvalidOutput);
}

#[tokio::test]
async fn a_system_stats_answer_without_system_and_devices_is_not_healthy() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    // A deliberately wrong server: valid JSON, but not ComfyUI's.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = r#"{"status": "ok"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let c = ComfyClient::new(&url, Duration::from_secs(5)).expect("client");
    let e = c.system_stats().await.expect_err("not ComfyUI");
    assert!(
        e.to_string()
            .contains("not a ComfyUI `/system_stats` answer"),
        "{e}"
    );
}
