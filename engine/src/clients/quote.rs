//! A server's body as a short line of text for an error message: markup stripped from an HTML
//! page (a proxy's or a framework's error page), whitespace collapsed, cut to a readable
//! length.

/// Longest server body quoted in an error message, in characters.
pub const QUOTE_LIMIT: usize = 400;

/// `body` as one line of at most [`QUOTE_LIMIT`] characters (and `…` when cut); an HTML page
/// loses its tags, comments, scripts and styles, and its common entities are decoded.
pub fn quote_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = if looks_like_html(&text) {
        strip_markup(&text)
    } else {
        text.into_owned()
    };
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return "(empty body)".into();
    }
    match one_line.char_indices().nth(QUOTE_LIMIT) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// A page of markup: it opens with a tag and closes one somewhere.
fn looks_like_html(text: &str) -> bool {
    let head: String = text
        .trim_start()
        .chars()
        .take(256)
        .collect::<String>()
        .to_ascii_lowercase();
    head.starts_with("<!doctype html")
        || head.starts_with("<html")
        || head.starts_with("<?xml")
        || (head.starts_with('<') && (head.contains("<body") || head.contains("<head")))
        || (head.starts_with('<') && (text.contains("</") || text.contains("/>")))
}

/// The text of an HTML page: everything outside tags, with `<script>`, `<style>` and comments
/// dropped whole. A block-level tag becomes a space, so words of two paragraphs do not run
/// together.
fn strip_markup(html: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let mut out = String::with_capacity(html.len().min(64 * 1024));
    let mut i = 0;
    while i < html.len() {
        let rest = &lower[i..];
        if rest.starts_with("<!--") {
            i += rest.find("-->").map_or(rest.len(), |e| e + 3);
        } else if let Some(skip) = ["script", "style"]
            .iter()
            .find(|t| rest.starts_with(&format!("<{t}")))
        {
            let close = format!("</{skip}");
            i += match rest.find(&close) {
                Some(e) => e + rest[e..].find('>').map_or(rest.len() - e, |g| g + 1),
                None => rest.len(),
            };
            out.push(' ');
        } else if rest.starts_with('<') {
            i += rest.find('>').map_or(rest.len(), |e| e + 1);
            out.push(' ');
        } else {
            let end = rest.find('<').unwrap_or(rest.len());
            out.push_str(&decode_entities(&html[i..i + end]));
            i += end;
        }
    }
    out
}

fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    text.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_html_error_page_is_quoted_as_its_text() {
        let page = b"<!DOCTYPE html>\n<html><head><title>500 Internal Server Error</title>\
            <style>body { color: red }</style><script>var x = '<b>';</script></head>\
            <body><!-- a comment --><h1>Internal&nbsp;Server Error</h1>\
            <p>The server said: a &lt;b&gt; &amp; c</p></body></html>";
        assert_eq!(
            quote_body(page),
            "500 Internal Server Error Internal Server Error The server said: a <b> & c"
        );
    }

    #[test]
    fn a_megabyte_of_markup_is_cut_to_the_limit_and_has_no_tags() {
        let mut page = String::from("<html><body>");
        while page.len() < 1024 * 1024 {
            page.push_str("<div class=\"row\"><span>cell</span></div>\n");
        }
        page.push_str("</body></html>");
        let q = quote_body(page.as_bytes());
        assert!(!q.contains('<') && !q.contains("class="), "{q}");
        assert!(q.starts_with("cell cell"), "{q}");
        assert_eq!(q.chars().count(), QUOTE_LIMIT + 1);
    }

    #[test]
    fn text_and_json_are_kept_as_they_are_on_one_line() {
        assert_eq!(quote_body(b"a <b> c\n  d"), "a <b> c d");
        assert_eq!(
            quote_body(br#"{"error": "x < y"}"#),
            r#"{"error": "x < y"}"#
        );
        assert_eq!(quote_body(b"  \n"), "(empty body)");
    }
}
