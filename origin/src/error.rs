//! The answers of the origin's HTTP API (and the edge router's, which builds on it): each
//! [`ApiError`] is one HTTP status. The layers below have errors of their own
//! (`store::StoreError`, the events' and the route's), mapped to an answer here.

/// Why a request to the store could not be answered. Each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed request (bad LL-HLS query, part too far ahead).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: no such stream, rendition or object (or it left the window).
    #[error("not found: {0}")]
    NotFound(String),
    /// 401: the request needs a token it did not bring (a viewer token for cart events).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
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
    /// 410: what was asked for was deleted on purpose (journal offsets past retention).
    #[error("gone: {0}")]
    Gone(String),
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
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::MethodNotAllowed => 405,
            ApiError::Conflict(_) => 409,
            ApiError::TooManyRequests(_) => 429,
            ApiError::Gone(_) => 410,
            ApiError::Unavailable(_) => 503,
        }
    }
}

/// The answer to a store error: its HTTP status is chosen here, at the API's edge.
impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError::*;
        let why = e.to_string();
        match e {
            NoStream(_) | NoRendition(_) | NoObject(_) | Gone => ApiError::NotFound(why),
            TooFarAhead => ApiError::BadRequest(why),
            Timeout => ApiError::Unavailable(why),
            Live(_) => ApiError::Conflict(why),
        }
    }
}

impl From<codec::hls::query::QueryError> for ApiError {
    fn from(e: codec::hls::query::QueryError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}
