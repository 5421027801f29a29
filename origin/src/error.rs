//! Errors of the origin library: what a viewer's request or a publisher's attempt got wrong.

/// Why a request to the store could not be answered. Each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed request (bad LL-HLS query, part too far ahead).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: no such stream, rendition or object (or it left the window).
    #[error("not found: {0}")]
    NotFound(String),
    /// 403: playback needs a valid signed token for this path.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 405: only GET and HEAD are served.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the room is already being published.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 429: a client or room is over its rate.
    #[error("too many requests: {0}")]
    TooManyRequests(String),
    /// 503: a blocking request timed out, or no upstream can answer.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl ApiError {
    /// The HTTP status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::NotFound(_) => 404,
            ApiError::Forbidden(_) => 403,
            ApiError::MethodNotAllowed => 405,
            ApiError::Conflict(_) => 409,
            ApiError::TooManyRequests(_) => 429,
            ApiError::Unavailable(_) => 503,
        }
    }
}

impl From<codec::hls::query::QueryError> for ApiError {
    fn from(e: codec::hls::query::QueryError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}
