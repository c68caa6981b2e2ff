//! The one conversion from the API's signature types into the contract's, which the
//! operator renders for the gateway (forwarded headers) and the worker (its
//! environment). The API spelling (`StandardWebhooks`) stays the CRD's.

use hookline_contract::signature as contract;

use crate::{DigestEncoding, GenericHmac, Signature, SignaturePreset};

impl From<SignaturePreset> for contract::PresetName {
    fn from(preset: SignaturePreset) -> Self {
        match preset {
            SignaturePreset::Stripe => Self::Stripe,
            SignaturePreset::GitHub => Self::GitHub,
            SignaturePreset::Shopify => Self::Shopify,
            SignaturePreset::Slack => Self::Slack,
            SignaturePreset::StandardWebhooks => Self::StandardWebhooks,
            SignaturePreset::GenericHmac => Self::GenericHmac,
            SignaturePreset::Typeform => Self::Typeform,
            SignaturePreset::Bitbucket => Self::Bitbucket,
            SignaturePreset::Jira => Self::Jira,
            SignaturePreset::Sentry => Self::Sentry,
            SignaturePreset::PagerDuty => Self::PagerDuty,
            SignaturePreset::Linear => Self::Linear,
            SignaturePreset::Intercom => Self::Intercom,
            SignaturePreset::Vercel => Self::Vercel,
            SignaturePreset::Paddle => Self::Paddle,
            SignaturePreset::Calendly => Self::Calendly,
            SignaturePreset::Zoom => Self::Zoom,
            SignaturePreset::Twitch => Self::Twitch,
            SignaturePreset::GitLab => Self::GitLab,
            SignaturePreset::Discord => Self::Discord,
            SignaturePreset::SendGrid => Self::SendGrid,
            SignaturePreset::Twilio => Self::Twilio,
            SignaturePreset::Square => Self::Square,
            SignaturePreset::HubSpot => Self::HubSpot,
        }
    }
}

impl From<DigestEncoding> for contract::DigestEncoding {
    fn from(encoding: DigestEncoding) -> Self {
        match encoding {
            DigestEncoding::Hex => Self::Hex,
            DigestEncoding::Base64 => Self::Base64,
        }
    }
}

impl From<&GenericHmac> for contract::GenericHmac {
    fn from(generic: &GenericHmac) -> Self {
        Self {
            header: generic.header.clone(),
            encoding: generic.encoding.into(),
            prefix: generic.prefix.clone(),
        }
    }
}

impl Signature {
    /// The preset's name in the contract.
    pub fn preset_name(&self) -> contract::PresetName {
        self.preset.into()
    }

    /// The generic-hmac settings in the contract.
    pub fn generic_hmac_settings(&self) -> Option<contract::GenericHmac> {
        self.generic_hmac.as_ref().map(Into::into)
    }

    /// The headers the worker needs forwarded to verify this signature.
    pub fn forwarded_headers(&self) -> Vec<String> {
        contract::forwarded_headers(self.preset_name(), self.generic_hmac_settings().as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_api_preset_is_one_contract_preset_and_back() {
        // The schema's enum is what users can write.
        let crd = serde_json::to_value(<crate::Webhook as kube::CustomResourceExt>::crd()).unwrap();
        let values = crd
            .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/signature/properties/preset/enum")
            .unwrap();
        let mut names = BTreeSet::new();
        for value in values.as_array().unwrap() {
            let preset: SignaturePreset = serde_json::from_value(value.clone()).unwrap();
            names.insert(contract::PresetName::from(preset).as_str());
        }
        let all: BTreeSet<&str> = contract::PresetName::ALL
            .iter()
            .map(|p| p.as_str())
            .collect();
        assert_eq!(names, all);
    }
}
