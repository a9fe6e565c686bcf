//! The page, embedded in the binary (no files to install, nothing a local user could swap
//! under a running `hush web`): index.html, app.js and app.css from crates/hush/web/.

/// `GET /`.
pub(crate) const INDEX_HTML: &str = include_str!("../../web/index.html");
/// `GET /app.js`.
pub(crate) const APP_JS: &str = include_str!("../../web/app.js");
/// `GET /app.css`.
pub(crate) const APP_CSS: &str = include_str!("../../web/app.css");

#[cfg(test)]
mod tests {
    use super::*;

    /// The three together stay under this (bytes): the page is plain, and growth past it
    /// means something was pulled in that does not belong in a chat screen.
    const BUDGET: usize = 150 * 1024;

    #[test]
    fn the_embedded_page_stays_within_its_budget() {
        let total = INDEX_HTML.len() + APP_JS.len() + APP_CSS.len();
        assert!(
            total <= BUDGET,
            "index.html + app.js + app.css are {total} bytes, over {BUDGET}"
        );
        // Sanity: it is the real page, not something empty.
        assert!(INDEX_HTML.contains("app.js"), "index.html loads no app.js");
    }
}
