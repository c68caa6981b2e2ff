//! Errors that say what to do: the failure with its causes, then the step that fixes
//! the usual reason for it.

/// `error` with its causes, and a hint when the cause is a familiar one.
pub fn explain(error: &anyhow::Error) -> String {
    let text = format!("{error:#}");
    match hint(error, &text) {
        Some(hint) => format!("{text}\n  hint: {hint}"),
        None => text,
    }
}

fn hint(error: &anyhow::Error, text: &str) -> Option<String> {
    for cause in error.chain() {
        if let Some(kube::Error::Api(status)) = cause.downcast_ref::<kube::Error>() {
            return match status.code {
                401 => Some("the cluster did not accept your credentials; log in again as for kubectl (`kubectl auth whoami`)".to_owned()),
                403 => Some(format!(
                    "Kubernetes refused: {}. Ask for a Role with get/list on webhooks.hookline.dev (and get on the Webhook's Secret for send-test) in this namespace; `kubectl auth can-i list webhooks.hookline.dev` checks it",
                    status.message
                )),
                _ => None,
            };
        }
    }
    aws_hint(text)
}

/// Hints for AWS's answers, read from the SDK's error text (its error types differ
/// per operation and per service; their codes and messages are what is common).
pub fn aws_hint(text: &str) -> Option<String> {
    let credentials = [
        "no providers in chain provided credentials",
        "CredentialsNotLoaded",
        "failed to load credentials",
        "the credential provider was not enabled",
    ];
    if credentials.iter().any(|c| text.contains(c)) {
        return Some("no AWS credentials found: set AWS_PROFILE (after `aws sso login` if it is an SSO profile) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, as for the AWS CLI; `aws sts get-caller-identity` checks them".to_owned());
    }
    if text.contains("AccessDenied") || text.contains("not authorized") {
        return Some("AWS refused the call: your identity needs the on-call policy from the chart README (sqs:GetQueueAttributes, ReceiveMessage, SendMessage, DeleteMessage, ChangeMessageVisibility, PurgeQueue on the Webhook's queues; cloudwatch:GetMetricStatistics)".to_owned());
    }
    if text.contains("NonExistentQueue") || text.contains("QueueDoesNotExist") {
        return Some("the queue in the Webhook's status does not exist (any more): check the AWS account and region (AWS_PROFILE, AWS_REGION) and `kubectl describe webhook`".to_owned());
    }
    if text.contains("could not find region") || text.contains("No region") {
        return Some("set AWS_REGION (or a profile with a region)".to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn familiar_aws_failures_get_a_hint() {
        assert!(
            aws_hint("dispatch failure: no providers in chain provided credentials")
                .is_some_and(|h| h.contains("AWS_PROFILE"))
        );
        assert!(
            aws_hint("service error: AccessDenied: not allowed")
                .is_some_and(|h| h.contains("on-call policy"))
        );
        assert_eq!(aws_hint("something else"), None);
    }

    #[test]
    fn a_forbidden_kubernetes_answer_says_which_permission() {
        let status =
            kube::core::Status::failure("webhooks is forbidden", "Forbidden").with_code(403);
        let error =
            anyhow::Error::new(kube::Error::Api(Box::new(status))).context("listing Webhooks");
        let text = explain(&error);
        assert!(text.contains("listing Webhooks"), "{text}");
        assert!(text.contains("kubectl auth can-i"), "{text}");
    }
}
