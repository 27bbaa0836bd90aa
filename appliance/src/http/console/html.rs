//! The console's HTML, escaped by construction: [`Html`] takes markup only
//! as `&'static str` (written in this source, never from a request or the
//! database) and every other string through [`Html::text`] or
//! [`Html::attr`], which escape it. The page frame (title, landmarks, the
//! navigation and the sign-out form) and the form pieces (labelled
//! inputs, the CSRF field) are here, so every page has them alike.

/// An HTML fragment under construction.
#[derive(Debug, Default, Clone)]
pub struct Html {
    out: String,
}

/// The console's sections, for the navigation (the current one is marked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `/console`.
    Overview,
    /// `/console/accounts`.
    Accounts,
    /// `/console/jobs`.
    Jobs,
    /// `/console/ledger`.
    Ledger,
    /// `/console/agents`.
    Agents,
    /// `/console/prices`.
    Prices,
    /// `/console/codes`.
    Codes,
    /// `/console/webhooks`.
    Webhooks,
    /// `/console/providers`.
    Providers,
    /// Signing in: no navigation.
    SignIn,
}

const SECTIONS: [(Section, &str, &str); 9] = [
    (Section::Overview, "/console", "Overview"),
    (Section::Accounts, "/console/accounts", "Accounts"),
    (Section::Agents, "/console/agents", "Agents"),
    (Section::Jobs, "/console/jobs", "Jobs"),
    (Section::Ledger, "/console/ledger", "Ledger"),
    (Section::Prices, "/console/prices", "Prices"),
    (Section::Codes, "/console/codes", "Codes"),
    (Section::Webhooks, "/console/webhooks", "Webhooks"),
    (Section::Providers, "/console/providers", "Providers"),
];

impl Html {
    /// An empty fragment.
    pub fn new() -> Html {
        Html::default()
    }

    /// Trusted markup, written in this crate's source.
    pub fn raw(&mut self, markup: &'static str) -> &mut Html {
        self.out.push_str(markup);
        self
    }

    /// Text, escaped for element content and quoted attribute values alike.
    pub fn text(&mut self, text: &str) -> &mut Html {
        for c in text.chars() {
            match c {
                '&' => self.out.push_str("&amp;"),
                '<' => self.out.push_str("&lt;"),
                '>' => self.out.push_str("&gt;"),
                '"' => self.out.push_str("&quot;"),
                '\'' => self.out.push_str("&#39;"),
                c => self.out.push(c),
            }
        }
        self
    }

    /// ` name="value"`, the value escaped.
    pub fn attr(&mut self, name: &'static str, value: &str) -> &mut Html {
        self.out.push(' ');
        self.out.push_str(name);
        self.out.push_str("=\"");
        self.text(value);
        self.out.push('"');
        self
    }

    /// Another fragment, as built (already escaped).
    pub fn append(&mut self, other: &Html) -> &mut Html {
        self.out.push_str(&other.out);
        self
    }

    /// `<tag>text</tag>` for a tag without attributes.
    pub fn element(&mut self, tag: &'static str, text: &str) -> &mut Html {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
        self.text(text);
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
        self
    }

    /// `<a href="href">text</a>`.
    pub fn link(&mut self, href: &str, text: &str) -> &mut Html {
        self.raw("<a")
            .attr("href", href)
            .raw(">")
            .text(text)
            .raw("</a>")
    }

    /// A table row of text cells.
    pub fn row(&mut self, cells: &[&str]) -> &mut Html {
        self.raw("<tr>");
        for cell in cells {
            self.element("td", cell);
        }
        self.raw("</tr>")
    }

    /// A table's head row (`<th scope="col">`).
    pub fn head_row(&mut self, cells: &[&str]) -> &mut Html {
        self.raw("<thead><tr>");
        for cell in cells {
            self.raw("<th scope=\"col\">").text(cell).raw("</th>");
        }
        self.raw("</tr></thead>")
    }

    /// `<form method="post" action=...>` with the session's CSRF field.
    pub fn post_form(&mut self, action: &str, csrf: &str) -> &mut Html {
        self.raw("<form method=\"post\"")
            .attr("action", action)
            .raw(">")
            .hidden("csrf", csrf)
    }

    /// A GET form (filters), no CSRF: it changes nothing.
    pub fn get_form(&mut self, action: &str) -> &mut Html {
        self.raw("<form method=\"get\"")
            .attr("action", action)
            .raw(">")
    }

    /// `<input type="hidden">`.
    pub fn hidden(&mut self, name: &'static str, value: &str) -> &mut Html {
        self.raw("<input type=\"hidden\"")
            .attr("name", name)
            .attr("value", value)
            .raw(">")
    }

    /// A labelled input: `<label for=id>label</label><input id=id ...>`.
    pub fn input(
        &mut self,
        kind: &'static str,
        name: &'static str,
        label: &str,
        value: &str,
        required: bool,
    ) -> &mut Html {
        let id = format!("f-{name}");
        self.raw("<p><label")
            .attr("for", &id)
            .raw(">")
            .text(label)
            .raw("</label> <input")
            .attr("type", kind)
            .attr("id", &id)
            .attr("name", name)
            .attr("value", value);
        if required {
            self.raw(" required");
        }
        self.raw("></p>")
    }

    /// A labelled `<select>`; `options` are (value, text), `selected` the
    /// chosen value.
    pub fn select(
        &mut self,
        name: &'static str,
        label: &str,
        options: &[(String, String)],
        selected: &str,
    ) -> &mut Html {
        let id = format!("f-{name}");
        self.raw("<p><label")
            .attr("for", &id)
            .raw(">")
            .text(label)
            .raw("</label> <select")
            .attr("id", &id)
            .attr("name", name)
            .raw(">");
        for (value, text) in options {
            self.raw("<option").attr("value", value);
            if value == selected {
                self.raw(" selected");
            }
            self.raw(">").text(text).raw("</option>");
        }
        self.raw("</select></p>")
    }

    /// A one-button form that posts to `action` (a row's action: revoke,
    /// remove, send again), the button named for screen readers by `label`.
    pub fn action(&mut self, action: &str, csrf: &str, text: &str, label: &str) -> &mut Html {
        self.post_form(action, csrf)
            .raw("<button type=\"submit\"")
            .attr("aria-label", label)
            .raw(">")
            .text(text)
            .raw("</button></form>")
    }

    /// A secret shown once (a new key, code or signing secret): `what`
    /// labels it, `id` is its element's id.
    pub fn secret(&mut self, id: &'static str, what: &str, secret: &str) -> &mut Html {
        self.raw("<p><label")
            .attr("for", id)
            .raw(">")
            .text(what)
            .raw("</label></p><p><output")
            .attr("id", id)
            .raw(" class=\"secret\">")
            .text(secret)
            .raw("</output></p>")
    }

    /// `<button type="submit">text</button></form>`.
    pub fn submit(&mut self, text: &str) -> &mut Html {
        self.raw("<button type=\"submit\">")
            .text(text)
            .raw("</button></form>")
    }

    /// A notice (`role="status"`) or, when `alert`, an error (`role="alert"`).
    pub fn notice(&mut self, text: &str, alert: bool) -> &mut Html {
        if alert {
            self.raw("<p class=\"alert\" role=\"alert\">")
        } else {
            self.raw("<p class=\"notice\" role=\"status\">")
        }
        .text(text)
        .raw("</p>")
    }

    /// The markup.
    pub fn into_string(self) -> String {
        self.out
    }
}

/// A whole page: the title (`<title>` and `<h1>`), the navigation with
/// `current` marked and, for a signed-in operator, the sign-out form
/// carrying `csrf`; `body` inside `<main>`.
pub fn page(title: &str, current: Section, csrf: Option<&str>, body: &Html) -> String {
    let mut html = Html::new();
    html.raw("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">")
        .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
        .raw("<title>")
        .text(title)
        .raw(" · creditgate console</title>")
        .raw("<link rel=\"stylesheet\" href=\"/console/style.css\"></head><body>")
        .raw("<header><p class=\"brand\">creditgate console</p>");
    if current != Section::SignIn {
        html.raw("<nav aria-label=\"Console\"><ul>");
        for (section, href, name) in SECTIONS {
            html.raw("<li><a").attr("href", href);
            if section == current {
                html.raw(" aria-current=\"page\"");
            }
            html.raw(">").text(name).raw("</a></li>");
        }
        html.raw("</ul></nav>");
        if let Some(csrf) = csrf {
            html.post_form("/console/sign-out", csrf).submit("Sign out");
        }
    }
    html.raw("</header><main id=\"main\"><h1>")
        .text(title)
        .raw("</h1>")
        .append(body)
        .raw("</main><footer><p>Agents: <a href=\"/llms.txt\">/llms.txt</a></p></footer>")
        .raw("</body></html>");
    html.into_string()
}

/// The console's style sheet (served at `/console/style.css`, so the
/// content security policy needs no inline style).
pub const STYLE_CSS: &str = "\
body{font-family:system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}\
header{display:flex;flex-wrap:wrap;align-items:center;gap:1rem;padding:.5rem 1rem;background:#14323d;color:#fff}\
header a{color:#fff}header .brand{font-weight:bold;margin:0}\
nav ul{display:flex;gap:1rem;list-style:none;margin:0;padding:0}\
nav a[aria-current=page]{text-decoration:underline;font-weight:bold}\
header form{margin-left:auto}\
main{padding:1rem;max-width:72rem}\
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}\
pre{background:#eee;padding:.5rem;overflow:auto;max-width:100%}\
.alert{color:#8a1010;font-weight:bold}.notice{color:#0b5a2a}\
.secret{font-family:monospace;background:#fff3c4;padding:.5rem;word-break:break-all}\
label{display:inline-block;min-width:10rem}\
footer{padding:1rem;color:#555}\
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_from_outside_are_escaped_in_text_and_attributes() {
        let mut html = Html::new();
        html.element("td", "<script>alert('x')</script> & \"q\"")
            .link("/console/jobs?model=\"><script>", "<b>");
        let out = html.into_string();
        assert!(!out.contains("<script>"), "{out}");
        assert!(!out.contains("<b>"), "{out}");
        assert!(out.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"));
        assert!(out.contains("href=\"/console/jobs?model=&quot;&gt;&lt;script&gt;\""));
    }

    #[test]
    fn every_page_has_a_title_landmarks_and_labelled_inputs() {
        let mut body = Html::new();
        body.post_form("/console/accounts", "t0k3n")
            .input("text", "name", "Name", "", true)
            .submit("Create");
        let page = page("Accounts", Section::Accounts, Some("t0k3n"), &body);
        assert!(page.contains("<title>Accounts · creditgate console</title>"));
        assert!(page.contains("<main id=\"main\"><h1>Accounts</h1>"));
        assert!(page.contains("<nav aria-label=\"Console\">"));
        assert!(
            page.contains("<label for=\"f-name\">Name</label> <input type=\"text\" id=\"f-name\"")
        );
        assert_eq!(page.matches("name=\"csrf\" value=\"t0k3n\"").count(), 2);
        assert!(page.contains("href=\"/console/accounts\" aria-current=\"page\""));
    }
}
