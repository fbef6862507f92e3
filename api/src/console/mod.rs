//! The console: a few pages for auditors and operators, served by the API itself at
//! `/console`. Every asset is compiled into the binary, so the console works offline and is
//! exactly as old as the API it talks to; the pages call the same `/v1` routes with the bearer
//! token the user enters (kept in the tab's session storage, sent only in the `Authorization`
//! header). Nothing here is part of the `/v1` contract or its OpenAPI description.
//!
//! The pages are static; one small script renders them from `/v1` answers and draws the charts
//! as SVG. The Content-Security-Policy allows only this origin's scripts, styles and fetches,
//! no inline code, no frames, no form posts.

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Where the console is served.
pub const PATH: &str = "/console";

/// Only this origin's own files and `/v1` answers; nothing inline, nothing framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file: its path under [`PATH`], its media type and its bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "",
        content_type: "text/html; charset=utf-8",
        body: include_str!("assets/index.html"),
    },
    Asset {
        path: "/console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/console.css"),
    },
    Asset {
        path: "/console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/console.js"),
    },
    Asset {
        path: "/chart.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/chart.js"),
    },
    Asset {
        path: "/icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("assets/icon.svg"),
    },
];

fn serve(asset: &'static Asset) -> Response {
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The files change only with the binary; revalidating costs one small request each.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// The console's routes: the page at [`PATH`] (and `PATH/`) and each asset beside it.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new().route(&format!("{PATH}/"), get(|| async { serve(&ASSETS[0]) }));
    for asset in ASSETS {
        router = router.route(
            &format!("{PATH}{}", asset.path),
            get(move || async move { serve(asset) }),
        );
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_load_only_assets_that_are_served() {
        let page = ASSETS[0].body;
        for reference in page
            .split(['"', '\''])
            .filter(|part| part.starts_with(PATH))
        {
            let path = reference
                .strip_prefix(PATH)
                .expect("filtered on the prefix");
            assert!(
                ASSETS.iter().any(|asset| asset.path == path),
                "the page loads {reference}, which is not served"
            );
        }
    }

    #[test]
    fn no_asset_uses_inline_code_or_another_origin() {
        for asset in ASSETS {
            for forbidden in [
                "http://",
                "https://",
                "<style",
                " style=",
                " onclick=",
                "innerHTML",
                "eval(",
            ] {
                // The SVG namespace is a name, not a place anything is loaded from.
                let text = asset.body.replace("http://www.w3.org/2000/svg", "");
                assert!(
                    !text.contains(forbidden),
                    "{} contains {forbidden}",
                    asset.path
                );
            }
        }
        assert!(ASSETS[0]
            .body
            .contains("<script src=\"/console/console.js\""));
        assert!(!ASSETS[0].body.contains("<script>"));
    }
}
