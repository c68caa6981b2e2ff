//! The signature presets: how each provider signs, named once for the CRD's
//! conversion, the worker's flag and environment, the headers the gateway forwards
//! and the worker's verification.
//!
//! [`PresetName`] is a preset as it is configured (the CRD's `preset`, the worker's
//! `--signature-preset`); [`Preset`] is a preset with its settings, what the worker
//! verifies with. [`forwarded_headers`] is the table of headers each needs at the
//! worker: the route forwards exactly these, and the worker reads them by the
//! [`header`] names.

/// The request headers the presets read, lowercase as the worker looks them up.
pub mod header {
    /// Stripe: `t=<unix>,v1=<hex>[,v1=<hex>…]`.
    pub const STRIPE_SIGNATURE: &str = "stripe-signature";
    /// GitHub: `sha256=<hex>`.
    pub const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
    /// Shopify: base64.
    pub const SHOPIFY_HMAC: &str = "x-shopify-hmac-sha256";
    /// Slack: `v0=<hex>`.
    pub const SLACK_SIGNATURE: &str = "x-slack-signature";
    /// Slack: the signed timestamp.
    pub const SLACK_TIMESTAMP: &str = "x-slack-request-timestamp";
    /// Standard Webhooks: the message id.
    pub const WEBHOOK_ID: &str = "webhook-id";
    /// Standard Webhooks: the signed timestamp.
    pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
    /// Standard Webhooks: `v1,<base64> …`.
    pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
    /// Typeform: `sha256=<base64>`.
    pub const TYPEFORM_SIGNATURE: &str = "typeform-signature";
    /// Bitbucket and Jira Cloud (`sha256=<hex>`), Intercom (`sha1=<hex>`).
    pub const HUB_SIGNATURE: &str = "x-hub-signature";
    /// Sentry: hex.
    pub const SENTRY_SIGNATURE: &str = "sentry-hook-signature";
    /// PagerDuty: `v1=<hex>[,v1=<hex>…]`.
    pub const PAGERDUTY_SIGNATURE: &str = "x-pagerduty-signature";
    /// Linear: hex.
    pub const LINEAR_SIGNATURE: &str = "linear-signature";
    /// Vercel: hex HMAC-SHA1.
    pub const VERCEL_SIGNATURE: &str = "x-vercel-signature";
    /// Paddle Billing: `ts=<unix>;h1=<hex>[;h1=<hex>…]`.
    pub const PADDLE_SIGNATURE: &str = "paddle-signature";
    /// Calendly: `t=<unix>,v1=<hex>`.
    pub const CALENDLY_SIGNATURE: &str = "calendly-webhook-signature";
    /// Zoom: `v0=<hex>`.
    pub const ZOOM_SIGNATURE: &str = "x-zm-signature";
    /// Zoom: the signed timestamp.
    pub const ZOOM_TIMESTAMP: &str = "x-zm-request-timestamp";
    /// Twitch EventSub: the message id.
    pub const TWITCH_MESSAGE_ID: &str = "twitch-eventsub-message-id";
    /// Twitch EventSub: the signed timestamp (RFC 3339).
    pub const TWITCH_TIMESTAMP: &str = "twitch-eventsub-message-timestamp";
    /// Twitch EventSub: `sha256=<hex>`.
    pub const TWITCH_SIGNATURE: &str = "twitch-eventsub-message-signature";
    /// GitLab: the secret token itself.
    pub const GITLAB_TOKEN: &str = "x-gitlab-token";
    /// Discord: hex Ed25519 signature.
    pub const DISCORD_SIGNATURE: &str = "x-signature-ed25519";
    /// Discord: the signed timestamp.
    pub const DISCORD_TIMESTAMP: &str = "x-signature-timestamp";
    /// SendGrid: base64 DER ECDSA P-256 signature.
    pub const SENDGRID_SIGNATURE: &str = "x-twilio-email-event-webhook-signature";
    /// SendGrid: the signed timestamp.
    pub const SENDGRID_TIMESTAMP: &str = "x-twilio-email-event-webhook-timestamp";
    /// Twilio: base64 HMAC-SHA1 over the URL (and the form fields).
    pub const TWILIO_SIGNATURE: &str = "x-twilio-signature";
    /// Square: base64 HMAC-SHA256 over the notification URL and the body.
    pub const SQUARE_SIGNATURE: &str = "x-square-hmacsha256-signature";
    /// HubSpot: base64 HMAC-SHA256 over method, URI, body and timestamp.
    pub const HUBSPOT_SIGNATURE_V3: &str = "x-hubspot-signature-v3";
    /// HubSpot: the signed timestamp, in Unix milliseconds.
    pub const HUBSPOT_TIMESTAMP: &str = "x-hubspot-request-timestamp";
}

/// A preset as it is configured, without its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresetName {
    /// Stripe's `Stripe-Signature`.
    Stripe,
    /// GitHub's `X-Hub-Signature-256`.
    GitHub,
    /// Shopify's `X-Shopify-Hmac-Sha256`.
    Shopify,
    /// Slack's `X-Slack-Signature` with `X-Slack-Request-Timestamp`.
    Slack,
    /// Standard Webhooks' `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    StandardWebhooks,
    /// HMAC-SHA256 of the body in a header of the team's choice ([`GenericHmac`]).
    GenericHmac,
    /// Typeform's `Typeform-Signature: sha256=<base64>`.
    Typeform,
    /// Bitbucket Cloud's `X-Hub-Signature: sha256=<hex>`.
    Bitbucket,
    /// Jira Cloud's `X-Hub-Signature: sha256=<hex>`.
    Jira,
    /// Sentry's `Sentry-Hook-Signature`, hex.
    Sentry,
    /// PagerDuty's `X-PagerDuty-Signature: v1=<hex>[,v1=…]`.
    PagerDuty,
    /// Linear's `Linear-Signature`, hex.
    Linear,
    /// Intercom's `X-Hub-Signature: sha1=<hex>` (HMAC-SHA1).
    Intercom,
    /// Vercel's `x-vercel-signature`, hex HMAC-SHA1.
    Vercel,
    /// Paddle Billing's `Paddle-Signature: ts=…;h1=…`.
    Paddle,
    /// Calendly's `Calendly-Webhook-Signature: t=…,v1=…`.
    Calendly,
    /// Zoom's `x-zm-signature: v0=…` with `x-zm-request-timestamp`.
    Zoom,
    /// Twitch EventSub's `Twitch-Eventsub-Message-Signature: sha256=…`.
    Twitch,
    /// GitLab's `X-Gitlab-Token`, the secret itself.
    GitLab,
    /// Discord's `X-Signature-Ed25519` with `X-Signature-Timestamp`.
    Discord,
    /// SendGrid's `X-Twilio-Email-Event-Webhook-Signature` with its timestamp.
    SendGrid,
    /// Twilio's `X-Twilio-Signature`, over the public URL.
    Twilio,
    /// Square's `x-square-hmacsha256-signature`, over the public URL and the body.
    Square,
    /// HubSpot's `X-HubSpot-Signature-v3` with `X-HubSpot-Request-Timestamp`.
    HubSpot,
}

impl PresetName {
    /// Every preset.
    pub const ALL: [Self; 24] = [
        Self::Stripe,
        Self::GitHub,
        Self::Shopify,
        Self::Slack,
        Self::StandardWebhooks,
        Self::GenericHmac,
        Self::Typeform,
        Self::Bitbucket,
        Self::Jira,
        Self::Sentry,
        Self::PagerDuty,
        Self::Linear,
        Self::Intercom,
        Self::Vercel,
        Self::Paddle,
        Self::Calendly,
        Self::Zoom,
        Self::Twitch,
        Self::GitLab,
        Self::Discord,
        Self::SendGrid,
        Self::Twilio,
        Self::Square,
        Self::HubSpot,
    ];

    /// The name as the worker's flag and environment spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stripe => "stripe",
            Self::GitHub => "github",
            Self::Shopify => "shopify",
            Self::Slack => "slack",
            Self::StandardWebhooks => "standard-webhooks",
            Self::GenericHmac => "generic-hmac",
            Self::Typeform => "typeform",
            Self::Bitbucket => "bitbucket",
            Self::Jira => "jira",
            Self::Sentry => "sentry",
            Self::PagerDuty => "pagerduty",
            Self::Linear => "linear",
            Self::Intercom => "intercom",
            Self::Vercel => "vercel",
            Self::Paddle => "paddle",
            Self::Calendly => "calendly",
            Self::Zoom => "zoom",
            Self::Twitch => "twitch",
            Self::GitLab => "gitlab",
            Self::Discord => "discord",
            Self::SendGrid => "sendgrid",
            Self::Twilio => "twilio",
            Self::Square => "square",
            Self::HubSpot => "hubspot",
        }
    }

    /// Whether the preset signs the URL the provider called: the worker then needs
    /// the Webhook's public URL and the route forwards the request's query string
    /// ([`crate::wire::QUERY_ATTRIBUTE`]).
    pub fn signs_url(self) -> bool {
        matches!(self, Self::Twilio | Self::Square | Self::HubSpot)
    }

    /// How many message attributes the route writes for the preset besides headers.
    pub fn extra_attributes(self) -> usize {
        usize::from(self.signs_url())
    }

    /// The headers the preset always reads; [`GenericHmac`]'s is configured.
    pub fn fixed_headers(self) -> &'static [&'static str] {
        match self {
            Self::Stripe => &[header::STRIPE_SIGNATURE],
            Self::GitHub => &[header::GITHUB_SIGNATURE],
            Self::Shopify => &[header::SHOPIFY_HMAC],
            Self::Slack => &[header::SLACK_SIGNATURE, header::SLACK_TIMESTAMP],
            Self::StandardWebhooks => &[
                header::WEBHOOK_ID,
                header::WEBHOOK_TIMESTAMP,
                header::WEBHOOK_SIGNATURE,
            ],
            Self::GenericHmac => &[],
            Self::Typeform => &[header::TYPEFORM_SIGNATURE],
            Self::Bitbucket => &[header::HUB_SIGNATURE],
            Self::Jira => &[header::HUB_SIGNATURE],
            Self::Sentry => &[header::SENTRY_SIGNATURE],
            Self::PagerDuty => &[header::PAGERDUTY_SIGNATURE],
            Self::Linear => &[header::LINEAR_SIGNATURE],
            Self::Intercom => &[header::HUB_SIGNATURE],
            Self::Vercel => &[header::VERCEL_SIGNATURE],
            Self::Paddle => &[header::PADDLE_SIGNATURE],
            Self::Calendly => &[header::CALENDLY_SIGNATURE],
            Self::Zoom => &[header::ZOOM_SIGNATURE, header::ZOOM_TIMESTAMP],
            Self::Twitch => &[
                header::TWITCH_MESSAGE_ID,
                header::TWITCH_TIMESTAMP,
                header::TWITCH_SIGNATURE,
            ],
            Self::GitLab => &[header::GITLAB_TOKEN],
            Self::Discord => &[header::DISCORD_SIGNATURE, header::DISCORD_TIMESTAMP],
            Self::SendGrid => &[header::SENDGRID_SIGNATURE, header::SENDGRID_TIMESTAMP],
            Self::Twilio => &[header::TWILIO_SIGNATURE],
            Self::Square => &[header::SQUARE_SIGNATURE],
            Self::HubSpot => &[header::HUBSPOT_SIGNATURE_V3, header::HUBSPOT_TIMESTAMP],
        }
    }
}

impl std::fmt::Display for PresetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no preset's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a signature preset (expected one of {names})", names = PresetName::ALL.map(PresetName::as_str).join(", "))]
pub struct UnknownPreset(pub String);

impl std::str::FromStr for PresetName {
    type Err = UnknownPreset;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| UnknownPreset(name.to_owned()))
    }
}

/// The headers a preset needs forwarded to the worker, lowercase: its fixed ones, or
/// for [`PresetName::GenericHmac`] the configured header (none without settings).
pub fn forwarded_headers(name: PresetName, generic: Option<&GenericHmac>) -> Vec<String> {
    match name {
        PresetName::GenericHmac => generic
            .map(|g| g.header.to_ascii_lowercase())
            .into_iter()
            .collect(),
        fixed => fixed
            .fixed_headers()
            .iter()
            .map(|h| (*h).to_owned())
            .collect(),
    }
}

/// A provider's signature scheme, with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preset {
    /// `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]` over `"{t}.{body}"`.
    Stripe,
    /// `X-Hub-Signature-256: sha256=<hex>` over the body.
    GitHub,
    /// `X-Shopify-Hmac-Sha256: <base64>` over the body.
    Shopify,
    /// `X-Slack-Signature: v0=<hex>` over `"v0:{X-Slack-Request-Timestamp}:{body}"`.
    Slack,
    /// Standard Webhooks: `webhook-signature: v1,<base64> …` over
    /// `"{webhook-id}.{webhook-timestamp}.{body}"`, with `whsec_<base64>` secrets.
    StandardWebhooks,
    /// HMAC-SHA256 of the body in a header of the team's choice.
    GenericHmac(GenericHmac),
    /// `Typeform-Signature: sha256=<base64>` over the body.
    Typeform,
    /// `X-Hub-Signature: sha256=<hex>` over the body (Bitbucket Cloud).
    Bitbucket,
    /// `X-Hub-Signature: sha256=<hex>` over the body (Jira Cloud, as Bitbucket).
    Jira,
    /// `Sentry-Hook-Signature: <hex>` over the body.
    Sentry,
    /// `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>…]` over the body; any may match.
    PagerDuty,
    /// `Linear-Signature: <hex>` over the body.
    Linear,
    /// `X-Hub-Signature: sha1=<hex>`, HMAC-SHA1 over the body.
    Intercom,
    /// `x-vercel-signature: <hex>`, HMAC-SHA1 over the body.
    Vercel,
    /// `Paddle-Signature: ts=<unix>;h1=<hex>[;h1=<hex>…]` over `"{ts}:{body}"`.
    Paddle,
    /// `Calendly-Webhook-Signature: t=<unix>,v1=<hex>` over `"{t}.{body}"`.
    Calendly,
    /// `x-zm-signature: v0=<hex>` over `"v0:{x-zm-request-timestamp}:{body}"`.
    Zoom,
    /// `Twitch-Eventsub-Message-Signature: sha256=<hex>` over message id, timestamp (RFC 3339) and body, concatenated.
    Twitch,
    /// `X-Gitlab-Token: <secret>`, compared whole in constant time.
    GitLab,
    /// `X-Signature-Ed25519: <hex>`, Ed25519 over `"{X-Signature-Timestamp}{body}"`;
    /// the secrets are the application's public keys, hex.
    Discord,
    /// `X-Twilio-Email-Event-Webhook-Signature: <base64 DER>`, ECDSA P-256 with
    /// SHA-256 over `"{…-Timestamp}{body}"`; the secrets are the verification keys,
    /// base64 DER (SubjectPublicKeyInfo).
    SendGrid,
    /// `X-Twilio-Signature: <base64>`, HMAC-SHA1 with the auth token over the URL
    /// Twilio called followed by each form field's name and value, sorted by name;
    /// for a JSON body the URL carries `bodySHA256=<hex SHA-256 of the body>`, only
    /// the URL is signed and the body must match the hash. The URL verifies with and
    /// without its default port, as Twilio's own validators accept both.
    Twilio,
    /// `x-square-hmacsha256-signature: <base64>` over `"{notification URL}{body}"`.
    Square,
    /// `X-HubSpot-Signature-v3: <base64>` over `"POST{URI}{body}{timestamp}"`, the
    /// URI with HubSpot's list of percent-escapes decoded, the timestamp
    /// (`X-HubSpot-Request-Timestamp`) in Unix milliseconds.
    HubSpot,
}

/// [`PresetName::GenericHmac`] without its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the generic-hmac preset needs its header")]
pub struct MissingGenericHmac;

impl Preset {
    /// The preset `name` with `generic`'s settings (read for
    /// [`PresetName::GenericHmac`] only, which cannot do without them).
    pub fn new(name: PresetName, generic: Option<GenericHmac>) -> Result<Self, MissingGenericHmac> {
        Ok(match name {
            PresetName::Stripe => Self::Stripe,
            PresetName::GitHub => Self::GitHub,
            PresetName::Shopify => Self::Shopify,
            PresetName::Slack => Self::Slack,
            PresetName::StandardWebhooks => Self::StandardWebhooks,
            PresetName::GenericHmac => Self::GenericHmac(generic.ok_or(MissingGenericHmac)?),
            PresetName::Typeform => Self::Typeform,
            PresetName::Bitbucket => Self::Bitbucket,
            PresetName::Jira => Self::Jira,
            PresetName::Sentry => Self::Sentry,
            PresetName::PagerDuty => Self::PagerDuty,
            PresetName::Linear => Self::Linear,
            PresetName::Intercom => Self::Intercom,
            PresetName::Vercel => Self::Vercel,
            PresetName::Paddle => Self::Paddle,
            PresetName::Calendly => Self::Calendly,
            PresetName::Zoom => Self::Zoom,
            PresetName::Twitch => Self::Twitch,
            PresetName::GitLab => Self::GitLab,
            PresetName::Discord => Self::Discord,
            PresetName::SendGrid => Self::SendGrid,
            PresetName::Twilio => Self::Twilio,
            PresetName::Square => Self::Square,
            PresetName::HubSpot => Self::HubSpot,
        })
    }

    /// Its name.
    pub fn name(&self) -> PresetName {
        match self {
            Self::Stripe => PresetName::Stripe,
            Self::GitHub => PresetName::GitHub,
            Self::Shopify => PresetName::Shopify,
            Self::Slack => PresetName::Slack,
            Self::StandardWebhooks => PresetName::StandardWebhooks,
            Self::GenericHmac(_) => PresetName::GenericHmac,
            Self::Typeform => PresetName::Typeform,
            Self::Bitbucket => PresetName::Bitbucket,
            Self::Jira => PresetName::Jira,
            Self::Sentry => PresetName::Sentry,
            Self::PagerDuty => PresetName::PagerDuty,
            Self::Linear => PresetName::Linear,
            Self::Intercom => PresetName::Intercom,
            Self::Vercel => PresetName::Vercel,
            Self::Paddle => PresetName::Paddle,
            Self::Calendly => PresetName::Calendly,
            Self::Zoom => PresetName::Zoom,
            Self::Twitch => PresetName::Twitch,
            Self::GitLab => PresetName::GitLab,
            Self::Discord => PresetName::Discord,
            Self::SendGrid => PresetName::SendGrid,
            Self::Twilio => PresetName::Twilio,
            Self::Square => PresetName::Square,
            Self::HubSpot => PresetName::HubSpot,
        }
    }

    /// The headers it reads ([`forwarded_headers`]).
    pub fn headers(&self) -> Vec<String> {
        let generic = match self {
            Self::GenericHmac(g) => Some(g),
            _ => None,
        };
        forwarded_headers(self.name(), generic)
    }
}

/// Settings of [`Preset::GenericHmac`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericHmac {
    /// Header carrying the digest.
    pub header: String,
    /// How the digest is written.
    pub encoding: DigestEncoding,
    /// Text before the digest, e.g. `sha256=`.
    pub prefix: Option<String>,
}

/// Encoding of a digest in a header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum DigestEncoding {
    /// Hexadecimal, either case.
    #[default]
    Hex,
    /// Standard base64.
    Base64,
}

impl DigestEncoding {
    /// Every encoding.
    pub const ALL: [Self; 2] = [Self::Hex, Self::Base64];

    /// The name as the worker's flag and environment spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hex => "hex",
            Self::Base64 => "base64",
        }
    }
}

/// A name that is no digest encoding's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a digest encoding (expected hex or base64)")]
pub struct UnknownEncoding(pub String);

impl std::str::FromStr for DigestEncoding {
    type Err = UnknownEncoding;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == name)
            .ok_or_else(|| UnknownEncoding(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back() {
        for name in PresetName::ALL {
            assert_eq!(name.as_str().parse::<PresetName>(), Ok(name));
        }
        for encoding in DigestEncoding::ALL {
            assert_eq!(encoding.as_str().parse::<DigestEncoding>(), Ok(encoding));
        }
        assert!(
            "Stripe".parse::<PresetName>().is_err(),
            "the flag spelling only"
        );
    }

    #[test]
    fn each_preset_forwards_the_headers_it_reads() {
        let generic = GenericHmac {
            header: "X-Signature".to_owned(),
            encoding: DigestEncoding::Base64,
            prefix: None,
        };
        let cases = [
            (Preset::Stripe, vec!["stripe-signature"]),
            (Preset::GitHub, vec!["x-hub-signature-256"]),
            (Preset::Shopify, vec!["x-shopify-hmac-sha256"]),
            (
                Preset::Slack,
                vec!["x-slack-signature", "x-slack-request-timestamp"],
            ),
            (
                Preset::StandardWebhooks,
                vec!["webhook-id", "webhook-timestamp", "webhook-signature"],
            ),
            (Preset::GenericHmac(generic.clone()), vec!["x-signature"]),
            (Preset::Typeform, vec!["typeform-signature"]),
            (Preset::Bitbucket, vec!["x-hub-signature"]),
            (Preset::Jira, vec!["x-hub-signature"]),
            (Preset::Sentry, vec!["sentry-hook-signature"]),
            (Preset::PagerDuty, vec!["x-pagerduty-signature"]),
            (Preset::Linear, vec!["linear-signature"]),
            (Preset::Intercom, vec!["x-hub-signature"]),
            (Preset::Vercel, vec!["x-vercel-signature"]),
            (Preset::Paddle, vec!["paddle-signature"]),
            (Preset::Calendly, vec!["calendly-webhook-signature"]),
            (
                Preset::Zoom,
                vec!["x-zm-signature", "x-zm-request-timestamp"],
            ),
            (
                Preset::Twitch,
                vec![
                    "twitch-eventsub-message-id",
                    "twitch-eventsub-message-timestamp",
                    "twitch-eventsub-message-signature",
                ],
            ),
            (Preset::GitLab, vec!["x-gitlab-token"]),
            (
                Preset::Discord,
                vec!["x-signature-ed25519", "x-signature-timestamp"],
            ),
            (
                Preset::SendGrid,
                vec![
                    "x-twilio-email-event-webhook-signature",
                    "x-twilio-email-event-webhook-timestamp",
                ],
            ),
            (Preset::Twilio, vec!["x-twilio-signature"]),
            (Preset::Square, vec!["x-square-hmacsha256-signature"]),
            (
                Preset::HubSpot,
                vec!["x-hubspot-signature-v3", "x-hubspot-request-timestamp"],
            ),
        ];
        assert_eq!(
            cases.len(),
            PresetName::ALL.len(),
            "a case for every preset"
        );
        for (preset, want) in cases {
            assert_eq!(preset.headers(), want, "{preset:?}");
            assert_eq!(
                Preset::new(preset.name(), Some(generic.clone())),
                Ok(preset.clone())
            );
        }
        assert_eq!(
            forwarded_headers(PresetName::GenericHmac, None),
            Vec::<String>::new()
        );
        assert_eq!(
            Preset::new(PresetName::GenericHmac, None),
            Err(MissingGenericHmac)
        );
    }

    #[test]
    fn every_preset_fits_the_message_attribute_budget() {
        // Besides the preset's headers the route forwards content-type, user-agent and
        // at most one ordering and one deduplication header, and for a preset that
        // signs the URL the query string.
        for name in PresetName::ALL {
            let headers = name.fixed_headers();
            assert!(
                headers.len() + 4 + name.extra_attributes() <= crate::wire::MAX_FORWARDED_HEADERS,
                "{name} forwards {} headers and {} more attributes",
                headers.len(),
                name.extra_attributes()
            );
            assert!(
                headers.iter().all(|h| *h == h.to_ascii_lowercase()),
                "{name}: the worker looks headers up lowercase"
            );
        }
    }
}
