//! Markdown that people write in Slope (a queue's guidelines), rendered to HTML for Slope's pages.
//!
//! The text comes from an operator and is read by annotators in their browser, so rendering keeps what
//! Markdown formats and drops what could act: raw HTML is shown as text, and a link or image keeps its
//! address only when that is relative or `http`, `https` or `mailto`. A guideline can format and link; it
//! can never script. The page's Content-Security-Policy would refuse an inline script anyway; this keeps
//! `javascript:` links and injected markup out of the page in the first place.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, html};

/// `markdown` as HTML, safe to place in a page (see the module's comment).
pub fn to_safe_html(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        // Escaped by the HTML writer like any text, so a tag reads as what was typed.
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
            Event::Start(Tag::Link { link_type, dest_url: safe_url(dest_url), title, id })
        }
        Event::Start(Tag::Image { link_type, dest_url, title, id }) => {
            Event::Start(Tag::Image { link_type, dest_url: safe_url(dest_url), title, id })
        }
        other => other,
    });
    let mut out = String::with_capacity(markdown.len() + markdown.len() / 2);
    html::push_html(&mut out, events);
    out
}

/// The address when it is relative or has an allowed scheme, else `#`. Browsers ignore ASCII whitespace
/// and control characters inside a scheme (`java\tscript:`), so the scheme is read without them.
fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let bare: String = url.chars().filter(|c| !c.is_ascii_whitespace() && !c.is_control()).collect();
    let scheme = bare.find([':', '/', '?', '#']).filter(|&i| bare[i..].starts_with(':')).map(|i| &bare[..i]);
    match scheme {
        None => url,
        Some(s) if ["http", "https", "mailto"].iter().any(|ok| s.eq_ignore_ascii_case(ok)) => url,
        Some(_) => CowStr::Borrowed("#"),
    }
}

#[cfg(test)]
mod tests {
    use super::to_safe_html;

    #[test]
    fn formats_lists_emphasis_code_and_links() {
        let html = to_safe_html(
            "Rewrite the suggestion.\n\n- **Rate** it 1–5\n- Tag `wrong-plan`\n\nSee [the plan](https://example.org/plan).",
        );
        assert!(html.contains("<p>Rewrite the suggestion.</p>"), "{html}");
        assert!(html.contains("<li><strong>Rate</strong> it 1–5</li>"), "{html}");
        assert!(html.contains("<code>wrong-plan</code>"), "{html}");
        assert!(html.contains(r#"<a href="https://example.org/plan">the plan</a>"#), "{html}");
    }

    #[test]
    fn raw_html_is_shown_as_text() {
        let html = to_safe_html("<script>alert(1)</script>\n\nInline <img src=x onerror=alert(1)> too.");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"), "{html}");
    }

    #[test]
    fn links_keep_only_safe_schemes() {
        for bad in
            ["javascript:alert(1)", "JavaScript:alert(1)", "<java\tscript:alert(1)>", "data:text/html,hi", "vbscript:x"]
        {
            let html = to_safe_html(&format!("[click]({bad}) ![pic]({bad})"));
            assert!(html.contains(r##"<a href="#">click</a>"##), "{bad}: {html}");
            assert!(html.contains(r##"<img src="#" alt="pic" />"##), "{bad}: {html}");
        }
        for good in [
            "https://example.org/a?b=c#d",
            "http://example.org",
            "mailto:lead@example.org",
            "/loops/notes",
            "#labels",
            "guide.md",
        ] {
            let html = to_safe_html(&format!("[go]({good})"));
            assert!(html.contains(&format!(r#"href="{}""#, good.replace('&', "&amp;"))), "{good}: {html}");
        }
    }
}
