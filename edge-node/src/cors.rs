//! Cross-origin answers, for players and shop pages served from another origin.
//!
//! Every answer allows any origin (`*`) without credentials, and lets any page see its
//! resource timing (`Timing-Allow-Origin`, so player analytics can read `nextHopProtocol`).
//! An origin listed in `playback.cors_origins` is named back instead, with credentials
//! allowed, so its page may send the playback cookie. Preflights (`OPTIONS`) are answered for
//! every path: what a request may then do is the route's business.

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};

const TIMING_ALLOW_ORIGIN: HeaderName = HeaderName::from_static("timing-allow-origin");

/// The answer to a preflight: the methods viewers use, the headers the page asked for, cached
/// by the browser for 10 minutes.
pub fn preflight(req: &Request<Bytes>) -> Response<Bytes> {
    let mut res = Response::new(Bytes::new());
    *res.status_mut() = StatusCode::NO_CONTENT;
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, POST, OPTIONS"),
    );
    if let Some(asked) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    h.append(
        header::VARY,
        HeaderValue::from_static("Access-Control-Request-Headers"),
    );
    res
}

/// Whether the page behind `req` may act with the viewer's cookies: no `Origin` (not a page),
/// the edge's own origin (the host and port the request was sent to), or one listed.
pub fn own_or_listed_page(req: &Request<Bytes>, listed: &[String]) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if listed.iter().any(|c| c.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let host = req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    let page_host = origin.split_once("://").map(|(_, h)| h);
    matches!((host, page_host), (Some(h), Some(p)) if h.eq_ignore_ascii_case(p))
}

/// Adds the cross-origin headers to `res`, an answer to a request from `origin` (its `Origin`
/// header), given the origins allowed credentials.
pub fn allow(res: &mut Response<Bytes>, origin: Option<&HeaderValue>, credentialed: &[String]) {
    let h = res.headers_mut();
    let listed = origin.filter(|o| {
        o.to_str()
            .is_ok_and(|o| credentialed.iter().any(|c| c.eq_ignore_ascii_case(o)))
    });
    match listed {
        Some(origin) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            h.insert(TIMING_ALLOW_ORIGIN, origin.clone());
        }
        None => {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            h.insert(TIMING_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
    }
    // The answer depends on `Origin` once some origins are named back: shared caches must
    // keep one copy per origin.
    if !credentialed.is_empty() {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(origin: Option<&str>, listed: &[&str]) -> http::HeaderMap {
        let mut res = Response::new(Bytes::new());
        let origin = origin.map(|o| HeaderValue::from_str(o).unwrap());
        let listed: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
        allow(&mut res, origin.as_ref(), &listed);
        res.headers().clone()
    }

    #[test]
    fn listed_origins_get_credentials_and_others_the_wildcard() {
        let shop = ["https://shop.example"];
        let h = answer(Some("https://shop.example"), &shop);
        assert_eq!(h["access-control-allow-origin"], "https://shop.example");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["timing-allow-origin"], "https://shop.example");
        assert_eq!(h["vary"], "Origin");

        let h = answer(Some("https://evil.example"), &shop);
        assert_eq!(h["access-control-allow-origin"], "*");
        assert!(!h.contains_key("access-control-allow-credentials"));
        assert_eq!(h["timing-allow-origin"], "*");

        let h = answer(None, &[]);
        assert_eq!(h["access-control-allow-origin"], "*");
        assert!(!h.contains_key("vary"));
    }

    #[test]
    fn a_preflight_allows_what_was_asked() {
        let req = Request::builder()
            .method("OPTIONS")
            .header("origin", "https://shop.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, x-trace")
            .body(Bytes::new())
            .unwrap();
        let res = preflight(&req);
        assert_eq!(res.status(), 204);
        let h = res.headers();
        assert_eq!(h["access-control-allow-headers"], "content-type, x-trace");
        assert!(h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST"));
    }
}
