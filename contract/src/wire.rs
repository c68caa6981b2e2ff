//! The message format shared by the gateway's mapping template (which writes each
//! request into SQS) and the worker (which reads it back).
//!
//! - The body is the raw request body.
//! - Each forwarded request header is one String message attribute named
//!   `Header.<lowercase name>` ([`header_attribute_name`]), whose value starts with a
//!   one-character marker. The template renders an absent header as an empty string,
//!   and SQS refuses empty attribute values; with the marker, the marker alone means
//!   "absent".
//!   - `%` ([`ENCODED_HEADER_VALUE_MARKER`]), written by the gateway: the value is
//!     URL-encoded (`application/x-www-form-urlencoded`, as Velocity's
//!     `$util.urlEncode` writes it), because the template picks one of several
//!     lookups by splitting on a character the encoding never leaves.
//!   - `:` ([`HEADER_VALUE_MARKER`]): the raw value, as gateways before the
//!     encoded form wrote it (messages still queued from them) and as
//!     [`raw_header_value`] writes it for producers that send directly.
//! - [`QUERY_ATTRIBUTE`], for the presets that sign the URL the provider called
//!   ([`crate::signature::PresetName::signs_url`]): the request's query parameters,
//!   behind the same markers. API Gateway's REST APIs hand templates the query string
//!   as a map of decoded values, never as sent, so the gateway writes each pair as
//!   `name=value`, both URL-encoded, joined with `&`, in the map's order; the worker
//!   rebuilds the URL from these ([`query_parameters`]). A repeated name keeps one
//!   value, and the exact escapes the provider used are lost (docs/worker.md, "Presets
//!   that sign the URL").
//! - SQS allows ten message attributes per message: the gateway forwards at most
//!   [`MAX_FORWARDED_HEADERS`] (headers and the query together), leaving room for one
//!   of the worker's own.
//! - [`QUEUED_AT_ATTRIBUTE`]: when the gateway first queued the request, written by
//!   the worker whenever it moves a message to another queue (to the dead-letter
//!   queue, back by a redrive). A moved message is a new message to SQS, with a new
//!   `SentTimestamp` (and a FIFO queue resets the enqueue time of what it moves to its
//!   dead-letter queue itself), so without it a redriven Stripe event would be checked
//!   against the redrive time and refused as a replay.
//!
//! A template cannot loop over all headers portably (emulators run a subset of
//! Velocity), so the operator forwards a fixed list: the signature preset's headers
//! ([`crate::signature::forwarded_headers`]), the ordering and deduplication headers,
//! `content-type` and `user-agent`.

/// Prefix of the message attributes that carry request headers.
pub const HEADER_ATTRIBUTE_PREFIX: &str = "Header.";

/// Leads a raw header attribute value, so that an absent header is not empty.
pub const HEADER_VALUE_MARKER: char = ':';

/// Leads a URL-encoded header attribute value (what the gateway writes).
pub const ENCODED_HEADER_VALUE_MARKER: char = '%';

/// How many headers one message may carry (SQS's limit of ten attributes, less one
/// for the worker's [`QUEUED_AT_ATTRIBUTE`]).
pub const MAX_FORWARDED_HEADERS: usize = 9;

/// The request's query parameters (see the module docs), written by the gateway for
/// the presets that sign the URL. A caller controls its query string anyway, so
/// nothing here is trusted beyond what the signature covers.
pub const QUERY_ATTRIBUTE: &str = "Hookline-Query";

/// SQS's limit of message attributes per message.
pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;

/// When the gateway first queued the request (epoch milliseconds), carried across
/// the worker's moves between queues. Only the worker writes it: the gateway writes
/// `Header.*` attributes only, so a caller of the public endpoint cannot set it;
/// whoever holds `sqs:SendMessage` on the queue can, and is trusted as the gateway is.
pub const QUEUED_AT_ATTRIBUTE: &str = "Hookline-Queued-At";

/// The attribute that carries header `name` (any case).
pub fn header_attribute_name(name: &str) -> String {
    format!("{HEADER_ATTRIBUTE_PREFIX}{}", name.to_ascii_lowercase())
}

/// The header an attribute carries, if it carries one.
pub fn header_name(attribute: &str) -> Option<&str> {
    attribute.strip_prefix(HEADER_ATTRIBUTE_PREFIX)
}

/// The attribute value for a raw header value, as producers that send directly
/// write it (the gateway writes the encoded form).
pub fn raw_header_value(value: &str) -> String {
    format!("{HEADER_VALUE_MARKER}{value}")
}

/// The header value a `Header.*` attribute value carries, in either form; `None`
/// when the header was absent (the marker alone, or nothing).
pub fn header_value(attribute_value: &str) -> Option<Vec<u8>> {
    let value = match attribute_value.strip_prefix(ENCODED_HEADER_VALUE_MARKER) {
        Some(encoded) => form_decode(encoded),
        None => attribute_value
            .strip_prefix(HEADER_VALUE_MARKER)
            .unwrap_or(attribute_value)
            .as_bytes()
            .to_vec(),
    };
    (!value.is_empty()).then_some(value)
}

/// The [`QUERY_ATTRIBUTE`] value for a query string as sent (without the `?`), for
/// producers that send directly (the gateway writes the encoded form).
pub fn raw_query_value(query: &str) -> String {
    format!("{HEADER_VALUE_MARKER}{query}")
}

/// The query parameters a [`QUERY_ATTRIBUTE`] value carries, decoded, in the order
/// written; empty for a request without a query (the marker alone). Either form
/// reads the same way: the gateway's `name=value&…` of URL-encoded parts is itself a
/// query string.
pub fn query_parameters(attribute_value: &str) -> Vec<(String, String)> {
    let query = attribute_value
        .strip_prefix(ENCODED_HEADER_VALUE_MARKER)
        .or_else(|| attribute_value.strip_prefix(HEADER_VALUE_MARKER))
        .unwrap_or(attribute_value);
    form_pairs(query.as_bytes())
}

/// The `name=value` pairs of `application/x-www-form-urlencoded` text (a form body,
/// a query string), decoded, in order; a part without `=` is a name with an empty
/// value, empty parts are skipped.
pub fn form_pairs(text: &[u8]) -> Vec<(String, String)> {
    text.split(|b| *b == b'&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = match part.iter().position(|b| *b == b'=') {
                Some(i) => (&part[..i], &part[i + 1..]),
                None => (part, &b""[..]),
            };
            let decode = |raw: &[u8]| {
                String::from_utf8_lossy(&form_decode(&String::from_utf8_lossy(raw))).into_owned()
            };
            (decode(name), decode(value))
        })
        .collect()
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte.
fn form_decode(encoded: &str) -> Vec<u8> {
    let spaced = encoded.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_in_either_form() {
        let cases: [(&str, Option<&[u8]>); 7] = [
            // What Velocity's $util.urlEncode writes, behind the gateway's marker.
            ("%t%3D1%2Cv1%3D00", Some(b"t=1,v1=00")),
            (
                "%Stripe%2F1.0+%28%2Bhttps%3A%2F%2Fstripe.com%29",
                Some(b"Stripe/1.0 (+https://stripe.com)"),
            ),
            ("%", None),
            (":t=2,v1=11", Some(b"t=2,v1=11")),
            (":", None),
            ("", None),
            ("unmarked", Some(b"unmarked")),
        ];
        for (attribute, want) in cases {
            assert_eq!(header_value(attribute).as_deref(), want, "{attribute:?}");
        }
    }

    #[test]
    fn query_parameters_in_either_form() {
        let cases: [(&str, &[(&str, &str)]); 6] = [
            // What the gateway writes: `%` and `name=value` pairs, each URL-encoded.
            (
                "%bodySHA256=5ccde7145dfb8f56479710896586cb9d5911809d83afbe34627818790db0aec9",
                &[(
                    "bodySHA256",
                    "5ccde7145dfb8f56479710896586cb9d5911809d83afbe34627818790db0aec9",
                )],
            ),
            (
                "%foo=1&bar=a+b%26c%3Dd",
                &[("foo", "1"), ("bar", "a b&c=d")],
            ),
            ("%", &[]),
            ("", &[]),
            (":flag&x=%E2%9C%93", &[("flag", ""), ("x", "\u{2713}")]),
            ("%&&a=1&", &[("a", "1")]),
        ];
        for (attribute, want) in cases {
            let got = query_parameters(attribute);
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect();
            assert_eq!(got, want, "{attribute:?}");
        }
        assert_eq!(
            query_parameters(&raw_query_value("a=1&b=2")),
            [
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "2".to_owned())
            ]
        );
    }

    #[test]
    fn raw_values_and_names_read_back() {
        let name = header_attribute_name("Stripe-Signature");
        assert_eq!(name, "Header.stripe-signature");
        assert_eq!(header_name(&name), Some("stripe-signature"));
        assert_eq!(header_name(QUEUED_AT_ATTRIBUTE), None);
        let value = raw_header_value("50% off+more");
        assert_eq!(header_value(&value).as_deref(), Some(&b"50% off+more"[..]));
    }
}
