//! The errors of the proxy path: where a failure came from and whether asking elsewhere may
//! help (after pingora's `ErrorSource` and `RetryType`). The HTTP status a viewer gets is
//! chosen from them at the router's edge, not here.

use http::StatusCode;

/// Who failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The origins: unreachable, failing, or refusing.
    Upstream,
    /// The viewer's request itself (refused by an origin as invalid).
    Downstream,
    /// This edge.
    Internal,
}

/// Why the edge got no usable answer from its origins.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No origin is up to ask.
    #[error("no origin is reachable")]
    NoOrigin,
    /// Every origin asked failed: transport errors or 5xx answers (each named).
    #[error("no origin answered ({0})")]
    Failed(String),
    /// The room's primary origin is down and the others do not have the stream yet (a cold
    /// standby that has not started it).
    #[error("the stream's primary origin is down and no other origin has {0} yet")]
    PrimaryDown(String),
    /// An origin answered with a refusal (4xx, or 503 for a blocking request it could not
    /// serve in time): its status and reason, passed on.
    #[error("{reason}")]
    Refused { status: StatusCode, reason: String },
}

impl UpstreamError {
    /// Who failed.
    pub fn source(&self) -> Source {
        match self {
            UpstreamError::Refused { status, .. }
                if status.is_client_error() && *status != StatusCode::NOT_FOUND =>
            {
                Source::Downstream
            }
            _ => Source::Upstream,
        }
    }

    /// Whether asking again elsewhere (another edge, or later) may help: the origins failed,
    /// not the request.
    pub fn retry_elsewhere(&self) -> bool {
        match self {
            UpstreamError::NoOrigin | UpstreamError::Failed(_) | UpstreamError::PrimaryDown(_) => {
                true
            }
            UpstreamError::Refused { status, .. } => *status == StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The viewer's answer to an upstream error: the router's choice of HTTP status.
impl From<UpstreamError> for origin::ApiError {
    fn from(e: UpstreamError) -> Self {
        use origin::ApiError;
        match e {
            UpstreamError::Refused { status, reason } => match status {
                StatusCode::NOT_FOUND => ApiError::NotFound(reason),
                StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
                StatusCode::CONFLICT => ApiError::Conflict(reason),
                StatusCode::FORBIDDEN => ApiError::Forbidden(reason),
                StatusCode::TOO_MANY_REQUESTS => ApiError::TooManyRequests(reason),
                s if s.is_client_error() => ApiError::BadRequest(reason),
                _ => ApiError::Unavailable(reason),
            },
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_says_who_failed_and_whether_to_retry() {
        let refused = |status| UpstreamError::Refused {
            status,
            reason: "why".into(),
        };
        assert_eq!(UpstreamError::NoOrigin.source(), Source::Upstream);
        assert!(UpstreamError::Failed("a: tls".into()).retry_elsewhere());
        assert_eq!(
            refused(StatusCode::BAD_REQUEST).source(),
            Source::Downstream
        );
        assert!(!refused(StatusCode::BAD_REQUEST).retry_elsewhere());
        assert_eq!(refused(StatusCode::NOT_FOUND).source(), Source::Upstream);
        assert!(refused(StatusCode::SERVICE_UNAVAILABLE).retry_elsewhere());
        let answer = origin::ApiError::from(refused(StatusCode::NOT_FOUND));
        assert_eq!(answer.status(), 404);
        assert_eq!(
            origin::ApiError::from(UpstreamError::NoOrigin).status(),
            503
        );
    }
}
