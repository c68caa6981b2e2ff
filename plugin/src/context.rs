//! The cluster and the AWS account, found the way kubectl and the AWS CLI find them.

use anyhow::{Context as _, Result, bail};
use hookline_crds::{QueueRef, Webhook};
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::cli::Global;

/// What every command needs.
pub struct Ctx {
    pub kube: kube::Client,
    /// The namespace commands work in.
    pub namespace: String,
    aws: aws_config::SdkConfig,
    /// Clients for the configured region, made once: one connection pool for every
    /// Webhook `get` looks at. `None` without a configured region.
    clients: Option<(aws_sdk_sqs::Client, aws_sdk_cloudwatch::Client)>,
}

/// A Webhook's queue pair, from its status.
pub struct Queues {
    pub queue: QueueRef,
    pub dead_letter: QueueRef,
}

impl Ctx {
    pub async fn new(global: &Global) -> Result<Self> {
        let options = KubeConfigOptions {
            context: global.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match &global.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
            }
            None if global.context.is_some() => kube::Config::from_kubeconfig(&options).await?,
            None => kube::Config::infer()
                .await
                .context("finding the cluster: no kubeconfig (set KUBECONFIG or --kubeconfig) and not in a pod")?,
        };
        let namespace = global
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let kube = kube::Client::try_from(config).context("connecting to the cluster")?;
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let clients = aws.region().is_some().then(|| {
            (
                aws_sdk_sqs::Client::new(&aws),
                aws_sdk_cloudwatch::Client::new(&aws),
            )
        });
        Ok(Self {
            kube,
            namespace,
            aws,
            clients,
        })
    }

    /// The Webhook `name` in the namespace.
    pub async fn webhook(&self, name: &str) -> Result<Webhook> {
        let api: Api<Webhook> = Api::namespaced(self.kube.clone(), &self.namespace);
        match api.get_opt(name).await {
            Ok(Some(webhook)) => Ok(webhook),
            Ok(None) => bail!(
                "no Webhook {name} in namespace {ns}; `kubectl hookline get -n {ns}` lists them, `-A` every namespace",
                ns = self.namespace
            ),
            Err(e) => Err(e)
                .with_context(|| format!("reading Webhook {name} in namespace {}", self.namespace)),
        }
    }

    /// A Webhook's queues, once the operator has made them.
    pub fn queues(&self, webhook: &Webhook) -> Result<Queues> {
        let status = webhook.status.clone().unwrap_or_default();
        match (status.queue, status.dead_letter_queue) {
            (Some(queue), Some(dead_letter)) => Ok(Queues { queue, dead_letter }),
            _ => bail!(
                "Webhook {} has no queues yet; `kubectl describe webhook -n {} {}` says why",
                name(webhook),
                self.namespace,
                name(webhook)
            ),
        }
    }

    /// An SQS client in the queue's region: the configured one, else the queue ARN's.
    pub fn sqs(&self, queue: &QueueRef) -> aws_sdk_sqs::Client {
        if let Some((sqs, _)) = &self.clients {
            return sqs.clone();
        }
        let mut config = aws_sdk_sqs::config::Builder::from(&self.aws);
        if let Some(region) = arn_region(&queue.arn) {
            config = config.region(aws_sdk_sqs::config::Region::new(region));
        }
        aws_sdk_sqs::Client::from_conf(config.build())
    }

    /// A CloudWatch client in the queue's region (as [`Ctx::sqs`]).
    pub fn cloudwatch(&self, queue: &QueueRef) -> aws_sdk_cloudwatch::Client {
        if let Some((_, cloudwatch)) = &self.clients {
            return cloudwatch.clone();
        }
        let mut config = aws_sdk_cloudwatch::config::Builder::from(&self.aws);
        if let Some(region) = arn_region(&queue.arn) {
            config = config.region(aws_sdk_cloudwatch::config::Region::new(region));
        }
        aws_sdk_cloudwatch::Client::from_conf(config.build())
    }
}

/// Messages in `queue`, visible plus in flight.
pub async fn depth(sqs: &aws_sdk_sqs::Client, queue: &QueueRef) -> Result<u64, String> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue.url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| {
            format!(
                "reading the depth of {}: {}",
                queue_name(queue),
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )
        })?
        .attributes
        .unwrap_or_default();
    Ok([
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .filter_map(|a| attributes.get(a)?.parse::<u64>().ok())
    .sum())
}

/// The Webhook's name.
pub fn name(webhook: &Webhook) -> &str {
    webhook.metadata.name.as_deref().unwrap_or_default()
}

/// `arn:aws:sqs:<region>:<account>:<name>`'s region.
fn arn_region(arn: &str) -> Option<String> {
    let region = arn.split(':').nth(3)?;
    (!region.is_empty()).then(|| region.to_owned())
}

/// `arn:aws:sqs:<region>:<account>:<name>`'s queue name.
pub fn queue_name(queue: &QueueRef) -> &str {
    queue.arn.rsplit(':').next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_and_name_come_from_the_arn() {
        let queue = QueueRef {
            url: "https://sqs.eu-west-1.amazonaws.com/123456789012/hl-payments-stripe.fifo"
                .to_owned(),
            arn: "arn:aws:sqs:eu-west-1:123456789012:hl-payments-stripe.fifo".to_owned(),
        };
        assert_eq!(arn_region(&queue.arn).as_deref(), Some("eu-west-1"));
        assert_eq!(queue_name(&queue), "hl-payments-stripe.fifo");
        assert_eq!(arn_region("not an arn"), None);
    }
}
