//! The viewer pages: `/` lists the live rooms, `/live/ROOM/` plays a room with hls.js (tuned
//! for low latency) beside its live comments, a like button with the merged count, an "add to
//! cart" button, the room's viewer count (over every edge) and the current latency. hls.js is the npm package pinned in
//! `web/package-lock.json`, embedded at build time (`build.rs`) and served from
//! `/assets/hls.min.js`, its license at `/assets/hls.js-LICENSE.txt`: nothing is fetched from
//! elsewhere at run time. Its low-latency settings and catch-up are `/assets/daihuo-live.js`.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

const ROOM: &str = include_str!("pages/room.html");
const HLS_JS: &[u8] = include_bytes!(concat!(env!("DAIHUO_HLS_JS"), "/dist/hls.min.js"));
const LIVE_JS: &[u8] = include_bytes!("pages/live.js");
const HLS_JS_LICENSE: &[u8] = include_bytes!(concat!(env!("DAIHUO_HLS_JS"), "/LICENSE"));

/// The page of `room` (a valid room name: letters, digits, `-`, `_`, so safe in HTML and JS).
pub fn room(room: &str) -> Response<Bytes> {
    page(ROOM.replace("ROOM_NAME", room))
}

/// The list of live rooms, each a link to its page.
pub fn index(rooms: &[String]) -> Response<Bytes> {
    let mut items = String::new();
    for room in rooms {
        items.push_str(&format!("<li><a href=\"/live/{room}/\">{room}</a></li>\n"));
    }
    if rooms.is_empty() {
        items.push_str(
            "<li class=\"muted\">No room is live. Push one: \
             <code>ffmpeg ... -f mpegts 'srt://HOST:9000?streamid=#!::r=live/ROOM,m=publish'</code></li>\n",
        );
    }
    page(format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Live rooms · daihuo</title>\
         <style>body{{font-family:system-ui,sans-serif;background:#111;color:#eee;margin:2em}}\
         a{{color:#9cf}}.muted{{color:#999}}</style></head>\n<body>\n<h1>Live rooms</h1>\n\
         <ul>\n{items}</ul>\n</body>\n</html>\n"
    ))
}

/// `/assets/NAME`, if it is one.
pub fn asset(path: &str) -> Option<Response<Bytes>> {
    let (body, content_type) = match path {
        "/assets/hls.min.js" => (HLS_JS, "text/javascript; charset=utf-8"),
        "/assets/daihuo-live.js" => (LIVE_JS, "text/javascript; charset=utf-8"),
        "/assets/hls.js-LICENSE.txt" => (HLS_JS_LICENSE, "text/plain; charset=utf-8"),
        _ => return None,
    };
    let mut res = Response::new(Bytes::from_static(body));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The name does not say the version: cached for a day, revalidated after.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    Some(res)
}

fn page(html: String) -> Response<Bytes> {
    let mut res = Response::new(Bytes::from(html));
    *res.status_mut() = StatusCode::OK;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}
