//! Kaleyra join-link options (query parameters on a participant's link).

use std::fmt;

/// The languages Kaleyra links take (`language=<code>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkLanguage {
    It,
    En,
    Pl,
    Fr,
    De,
}

impl LinkLanguage {
    /// The code as Kaleyra takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkLanguage::It => "it",
            LinkLanguage::En => "en",
            LinkLanguage::Pl => "pl",
            LinkLanguage::Fr => "fr",
            LinkLanguage::De => "de",
        }
    }

    /// One of the five codes, ASCII case-insensitive, surrounding spaces ignored; anything
    /// else (including regional forms like `en-GB`) is `None`, so the company default applies.
    pub fn parse(value: &str) -> Option<Self> {
        [
            LinkLanguage::It,
            LinkLanguage::En,
            LinkLanguage::Pl,
            LinkLanguage::Fr,
            LinkLanguage::De,
        ]
        .into_iter()
        .find(|l| l.as_str().eq_ignore_ascii_case(value.trim()))
    }
}

impl fmt::Display for LinkLanguage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `link` with the link options appended as query parameters: `language=<code>` when given,
/// `virtual_background=image` (the company default background) when `background`. Handles a
/// link that already has a query (`&`) or a fragment (parameters go before `#`).
pub fn access_link(link: &str, language: Option<LinkLanguage>, background: bool) -> String {
    let mut params = Vec::new();
    if let Some(language) = language {
        params.push(format!("language={language}"));
    }
    if background {
        params.push("virtual_background=image".to_owned());
    }
    if params.is_empty() {
        return link.to_owned();
    }
    let (base, fragment) = match link.find('#') {
        Some(i) => link.split_at(i),
        None => (link, ""),
    };
    let separator = if !base.contains('?') {
        "?"
    } else if base.ends_with('?') || base.ends_with('&') {
        ""
    } else {
        "&"
    };
    format!("{base}{separator}{}{fragment}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINK: &str = "https://sandbox.bandyer.com/eu/direct-rest-call-handler/3f9a0c1d2e";

    #[test]
    fn parse_languages() {
        assert_eq!(LinkLanguage::parse("it"), Some(LinkLanguage::It));
        assert_eq!(LinkLanguage::parse("EN"), Some(LinkLanguage::En));
        assert_eq!(LinkLanguage::parse(" de "), Some(LinkLanguage::De));
        assert_eq!(LinkLanguage::parse("pl"), Some(LinkLanguage::Pl));
        assert_eq!(LinkLanguage::parse("fr"), Some(LinkLanguage::Fr));
        assert_eq!(LinkLanguage::parse("es"), None);
        assert_eq!(LinkLanguage::parse("en-GB"), None);
        assert_eq!(LinkLanguage::parse(""), None);
    }

    #[test]
    fn no_options_keeps_link() {
        assert_eq!(access_link(LINK, None, false), LINK);
    }

    #[test]
    fn options_on_plain_link() {
        assert_eq!(
            access_link(LINK, Some(LinkLanguage::It), false),
            format!("{LINK}?language=it")
        );
        assert_eq!(
            access_link(LINK, None, true),
            format!("{LINK}?virtual_background=image")
        );
        assert_eq!(
            access_link(LINK, Some(LinkLanguage::En), true),
            format!("{LINK}?language=en&virtual_background=image")
        );
    }

    #[test]
    fn options_on_link_with_query_or_fragment() {
        assert_eq!(
            access_link(&format!("{LINK}?a=1"), Some(LinkLanguage::Fr), true),
            format!("{LINK}?a=1&language=fr&virtual_background=image")
        );
        assert_eq!(
            access_link(&format!("{LINK}?"), Some(LinkLanguage::Fr), false),
            format!("{LINK}?language=fr")
        );
        assert_eq!(
            access_link(&format!("{LINK}#top"), None, true),
            format!("{LINK}?virtual_background=image#top")
        );
        assert_eq!(
            access_link(&format!("{LINK}?a=1#x?y"), Some(LinkLanguage::De), false),
            format!("{LINK}?a=1&language=de#x?y")
        );
    }
}
