//! The one place where AWS SDK errors become domain errors. Reconcile code matches
//! on [`AwsError`], never on SDK types.

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::http::Response;
use std::fmt;

/// An AWS control plane the operator talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// SQS.
    Sqs,
    /// API Gateway (REST APIs, v1).
    ApiGateway,
    /// Certificate Manager.
    Acm,
    /// Route 53.
    Route53,
    /// IAM.
    Iam,
    /// CloudWatch Logs.
    Logs,
    /// Lambda.
    Lambda,
}

impl Service {
    /// Lowercase name, used in metrics labels and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqs => "sqs",
            Self::ApiGateway => "apigateway",
            Self::Acm => "acm",
            Self::Route53 => "route53",
            Self::Iam => "iam",
            Self::Logs => "logs",
            Self::Lambda => "lambda",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong with an AWS call, in terms the reconciler acts on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsError {
    /// The object does not exist (deleting it is then already done).
    #[error("{service} {operation}: not found: {message}")]
    NotFound {
        /// Service called.
        service: Service,
        /// Operation called.
        operation: &'static str,
        /// AWS's message.
        message: String,
    },
    /// AWS throttled the call, or asked to retry a concurrent modification, and our
    /// own retries did not get through; try again later.
    #[error("{service} {operation}: throttled: {message}")]
    Throttled {
        /// Service called.
        service: Service,
        /// Operation called.
        operation: &'static str,
        /// AWS's message.
        message: String,
    },
    /// An object with our name exists without our owner tag (or with another
    /// owner's): it is never changed, adopted or deleted.
    #[error("{service} {operation}: not ours: {message}")]
    NotOwned {
        /// Service called.
        service: Service,
        /// Operation called.
        operation: &'static str,
        /// Which object, and whose it is.
        message: String,
    },
    /// The change conflicts with the object's current state (it already exists with
    /// other settings, or is being changed concurrently).
    #[error("{service} {operation}: conflict: {message}")]
    Conflict {
        /// Service called.
        service: Service,
        /// Operation called.
        operation: &'static str,
        /// What conflicts, naming the object.
        message: String,
    },
    /// AWS refused the request as invalid; retrying the same request will not help.
    #[error("{service} {operation}: invalid request ({code}): {message}")]
    Invalid {
        /// Service called.
        service: Service,
        /// Operation called.
        operation: &'static str,
        /// AWS's error code.
        code: String,
        /// AWS's message.
        message: String,
    },
    /// Anything else: network trouble, 5xx after retries, an unexpected answer.
    #[error("{service} {operation}: {message}")]
    Other {
        /// Service called.
        service: Service,
        /// Operation called.
        operation: &'static str,
        /// What happened, with the SDK's full context.
        message: String,
        /// Whether trying again may succeed (5xx, timeouts, connection errors).
        retryable: bool,
    },
}

impl AwsError {
    /// A short name of the kind, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::Throttled { .. } => "throttled",
            Self::NotOwned { .. } => "not_owned",
            Self::Conflict { .. } => "conflict",
            Self::Invalid { .. } => "invalid",
            Self::Other { .. } => "error",
        }
    }

    /// Whether the call may succeed if simply made again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Throttled { .. } => true,
            Self::Other { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// True for [`AwsError::NotOwned`]: the object exists under our name but is not ours.
    pub fn is_not_owned(&self) -> bool {
        matches!(self, Self::NotOwned { .. })
    }

    /// True for [`AwsError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// An object with our name that does not carry our owner tag: never adopted.
    pub fn not_owned(
        service: Service,
        operation: &'static str,
        what: &str,
        name: &str,
        owner: Option<&str>,
    ) -> Self {
        let message = match owner {
            Some(other) => {
                format!("{what} {name} exists and belongs to {other}; it is left untouched")
            }
            None => {
                format!("{what} {name} exists without Hookline's owner tag; it is left untouched")
            }
        };
        Self::NotOwned {
            service,
            operation,
            message,
        }
    }

    /// An answer AWS should not give (a missing id, an unparseable document).
    pub fn unexpected(
        service: Service,
        operation: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self::Other {
            service,
            operation,
            message: message.into(),
            retryable: false,
        }
    }

    /// Maps an SDK error by its AWS error code and HTTP status.
    pub fn from_sdk<E>(
        service: Service,
        operation: &'static str,
        error: SdkError<E, Response>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = match &error {
            SdkError::ServiceError(context) => Some(context.raw().status().as_u16()),
            SdkError::ResponseError(context) => Some(context.raw().status().as_u16()),
            _ => None,
        };
        let code = error.code().unwrap_or_default().to_owned();
        let message = error.message().unwrap_or_default().to_owned();
        match classify(service, &code, &message, status) {
            Kind::NotFound => Self::NotFound {
                service,
                operation,
                message,
            },
            Kind::Throttled => Self::Throttled {
                service,
                operation,
                message,
            },
            Kind::Conflict => Self::Conflict {
                service,
                operation,
                message,
            },
            Kind::Invalid => Self::Invalid {
                service,
                operation,
                code,
                message,
            },
            Kind::Other { retryable } => Self::Other {
                service,
                operation,
                message: DisplayErrorContext(&error).to_string(),
                retryable,
            },
        }
    }
}

/// `Ok(())` when the call failed only because the object is already gone: for a
/// delete, that is success.
pub fn gone_is_fine<T>(result: Result<T, AwsError>) -> Result<(), AwsError> {
    match result {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    NotFound,
    Throttled,
    Conflict,
    Invalid,
    Other { retryable: bool },
}

/// AWS error codes by meaning, across the services we call. Codes differ per
/// service (and SQS has both its query and JSON spellings), so this is a table.
/// The same code can mean different things per service: API Gateway's
/// `LimitExceededException` is its 429 "rate limit exceeded, retry" answer, while ACM,
/// CloudWatch Logs and Route 53 use `LimitExceeded…` for a quota (too many objects),
/// which no retry fixes.
fn classify(service: Service, code: &str, message: &str, status: Option<u16>) -> Kind {
    match (service, code) {
        (Service::ApiGateway, "LimitExceededException") => return Kind::Throttled,
        // "Unable to complete operation due to concurrent modification. Please try
        // again later." (API Gateway, 409): the object is not in another state, a
        // parallel change of the same REST API is in progress.
        (_, "ConflictException") if message.contains("concurrent modification") => {
            return Kind::Throttled;
        }
        // "The operation cannot be performed at this time. An update is in progress
        // for resource: …" (Lambda, 409); a statement id in use is a real conflict.
        (Service::Lambda, "ResourceConflictException") if message.contains("in progress") => {
            return Kind::Throttled;
        }
        _ => {}
    }
    match code {
        "NotFoundException"
        | "ResourceNotFoundException"
        | "NoSuchEntity"
        | "NoSuchHostedZone"
        | "NoSuchChange"
        | "NoSuchCertificate"
        | "QueueDoesNotExist"
        | "AWS.SimpleQueueService.NonExistentQueue" => Kind::NotFound,
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestThrottled"
        | "RequestLimitExceeded"
        | "PriorRequestNotComplete"
        | "SlowDown"
        | "RequestThrottledException" => Kind::Throttled,
        "ConflictException"
        | "QueueAlreadyExists"
        | "QueueNameExists"
        | "EntityAlreadyExists"
        | "ResourceAlreadyExistsException"
        | "HostedZoneAlreadyExists"
        | "ResourceInUseException"
        | "ResourceConflictException"
        | "AWS.SimpleQueueService.QueueDeletedRecently"
        | "QueueDeletedRecently" => Kind::Conflict,
        // Route 53 reports an existing record (CREATE) or a missing one (DELETE) as an
        // invalid batch; the first is a conflict, the second means already deleted.
        "InvalidChangeBatch" if message.contains("already exists") => Kind::Conflict,
        "InvalidChangeBatch" if message.contains("not found") => Kind::NotFound,
        "BadRequestException"
        | "ValidationException"
        | "InvalidParameterValue"
        | "InvalidParameterValueException"
        | "InvalidAttributeName"
        | "InvalidAttributeValue"
        | "InvalidInput"
        | "InvalidChangeBatch"
        | "InvalidDomainValidationOptionsException"
        | "InvalidArnException"
        | "MalformedPolicyDocument"
        | "LimitExceededException"
        | "LimitExceeded"
        | "InvalidDomainName"
        | "InvalidParameterException"
        | "UnsupportedOperation" => Kind::Invalid,
        _ => match status {
            Some(404) => Kind::NotFound,
            Some(409) => Kind::Conflict,
            Some(429) => Kind::Throttled,
            Some(400..=499) => Kind::Invalid,
            // 5xx, or no response at all (timeout, connection refused): worth a retry.
            _ => Kind::Other { retryable: true },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        let table = [
            ("NotFoundException", "", Some(404), Kind::NotFound),
            (
                "AWS.SimpleQueueService.NonExistentQueue",
                "",
                Some(400),
                Kind::NotFound,
            ),
            ("QueueDoesNotExist", "", Some(400), Kind::NotFound),
            ("NoSuchHostedZone", "", Some(404), Kind::NotFound),
            ("NoSuchEntity", "", Some(404), Kind::NotFound),
            ("TooManyRequestsException", "", Some(429), Kind::Throttled),
            ("Throttling", "Rate exceeded", Some(400), Kind::Throttled),
            ("PriorRequestNotComplete", "", Some(400), Kind::Throttled),
            ("QueueAlreadyExists", "", Some(400), Kind::Conflict),
            ("ConflictException", "", Some(409), Kind::Conflict),
            ("EntityAlreadyExists", "", Some(409), Kind::Conflict),
            (
                "InvalidChangeBatch",
                "Tried to create resource record set [name='a.', type='A'] but it already exists",
                Some(400),
                Kind::Conflict,
            ),
            (
                "InvalidChangeBatch",
                "Tried to delete resource record set [name='a.', type='A'] but it was not found",
                Some(400),
                Kind::NotFound,
            ),
            (
                "InvalidChangeBatch",
                "RRSet of type CNAME with DNS name a. is not permitted",
                Some(400),
                Kind::Invalid,
            ),
            (
                "BadRequestException",
                "Invalid mapping expression",
                Some(400),
                Kind::Invalid,
            ),
            ("InvalidAttributeValue", "", Some(400), Kind::Invalid),
            ("SomethingNew", "", Some(404), Kind::NotFound),
            ("SomethingNew", "", Some(418), Kind::Invalid),
            (
                "InternalFailure",
                "",
                Some(500),
                Kind::Other { retryable: true },
            ),
            ("", "", None, Kind::Other { retryable: true }),
        ];
        for (code, message, status, expected) in table {
            assert_eq!(
                classify(Service::Sqs, code, message, status),
                expected,
                "{code} {message} {status:?}"
            );
        }
    }

    /// What API Gateway asks to retry is retried; the same code from a service where
    /// it names a quota is not.
    #[test]
    fn codes_map_to_kinds_per_service() {
        let concurrent =
            "Unable to complete operation due to concurrent modification. Please try again later.";
        let table = [
            (
                Service::ApiGateway,
                "LimitExceededException",
                "The request exceeded the rate limit. Retry after the specified time period.",
                Some(429),
                Kind::Throttled,
            ),
            (
                Service::Acm,
                "LimitExceededException",
                "the maximum number of certificates has been reached",
                Some(400),
                Kind::Invalid,
            ),
            (
                Service::Logs,
                "LimitExceededException",
                "Resource limit exceeded.",
                Some(400),
                Kind::Invalid,
            ),
            (
                Service::Route53,
                "LimitExceeded",
                "too many hosted zones",
                Some(400),
                Kind::Invalid,
            ),
            (
                Service::ApiGateway,
                "ConflictException",
                concurrent,
                Some(409),
                Kind::Throttled,
            ),
            (
                Service::ApiGateway,
                "ConflictException",
                "Another resource with the same parent already has this name: a",
                Some(409),
                Kind::Conflict,
            ),
            (
                Service::ApiGateway,
                "ConflictException",
                "Cannot delete authorizer 'x', is referenced in method: POST//a",
                Some(409),
                Kind::Conflict,
            ),
        ];
        for (service, code, message, status, expected) in table {
            assert_eq!(
                classify(service, code, message, status),
                expected,
                "{service} {code} {message}"
            );
        }
    }

    #[test]
    fn retryable_kinds() {
        let throttled = AwsError::Throttled {
            service: Service::Route53,
            operation: "X",
            message: String::new(),
        };
        assert!(throttled.is_retryable());
        let conflict = AwsError::not_owned(
            Service::Sqs,
            "GetQueueUrl",
            "queue",
            "q.fifo",
            Some("other-uid"),
        );
        assert!(!conflict.is_retryable());
        assert!(
            conflict
                .to_string()
                .contains("q.fifo exists and belongs to other-uid"),
            "{conflict}"
        );
    }
}
